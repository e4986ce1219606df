#!/usr/bin/env bash
# CI stages after `make test` (.ci/run; also `make test-jazzy`, `make test-humble`): the package on a
# robot PC's Python, numpy and ROS, without torch (README "Robot PC", docs/bringup.md).
#
#   jazzy   Python 3.12, ROS 2 Jazzy from PyPI wheels (rclpy 7.1.6), Ubuntu 24.04's numpy 1.26.4 and apt
#           versions of package.xml's rosdep keys (requirements/jazzy-ci.txt) with requirements/robot.txt
#           on top; msg/, srv/ and the dev Interbotix messages built into the venv (scripts/setup_env.sh).
#           Runs the whole suite except what needs torch: nodes over DDS, sim, recording, launch graph,
#           the CMake install tree (the colcon route).
#   humble  Python 3.10 with Ubuntu 22.04's numpy 1.21.5 and apt versions (requirements/humble-ci.txt)
#           and robot.txt. Humble has no PyPI wheels, so no ROS here: every import statement of the
#           package must resolve on 3.10 (scripts/ci_check_imports.py), then the tests not marked `ros`
#           run, except what needs torch.
#
# Both check that `pip install -r requirements/robot.txt` over the apt versions would install nothing
# (it never replaces ROS's numpy). Tests that need torch are reported as skipped
# (scripts/ci_missing_ok.py); every other failure fails the stage. The venvs are build/venv-jazzy and
# build/venv-humble, reused while their inputs are unchanged (CI starts from a clean clone: ~1.5 min).
#
# Usage: scripts/ci_ros_distros.sh [jazzy] [humble]     (default: both)
#   PYTHON312 / PYTHON310   interpreters (default: pythonX.Y on PATH, else pyenv's)
#   DISTRO_PYTEST_ARGS      extra pytest arguments, e.g. "-x" or a test path
#   CI_SUMMARY_FILE         each stage's closing line is appended here too (.ci/run prints them last)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST   # DDS discovery on loopback only
export MUJOCO_GL=${MUJOCO_GL:-egl}
STAGES=${*:-jazzy humble}
mkdir -p build

# torch, and for humble everything ROS, may be missing; a test failing for any other reason fails.
NO_TORCH=torch
NO_ROS='rclpy,*_msgs,*_srvs,*_interfaces,rosidl_*,rpyutils,ament_index_python,launch,launch_ros,cosmos_policy_ros.msg,cosmos_policy_ros.srv'

quiet() {  # this machine's pip config names local index folders that may not exist: drop that noise
  "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}

find_python() {  # $1 = 3.12 -> a python3.12 that runs
  local v=$1 var="PYTHON${1/./}" c
  for c in "${!var:-}" "python$v" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$v".*/bin/python"$v" "/usr/bin/python$v"; do
    [ -n "$c" ] || continue
    if "$c" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$v'.split('.'))))" >/dev/null 2>&1; then
      command -v "$c"
      return 0
    fi
  done
  echo "ci_ros_distros: no Python $v found (set $var=/path/to/python$v)" >&2
  return 1
}

robot_txt_installs_nothing() {  # $1 venv: the robot-PC step over the apt versions must keep them all
  local out
  out=$(quiet "$1/bin/pip" install --disable-pip-version-check --dry-run -r requirements/robot.txt)
  if grep -q "^Would install" <<<"$out"; then
    echo "ci_ros_distros: requirements/robot.txt would replace packages of the base system:" >&2
    grep "^Would install" <<<"$out" >&2
    return 1
  fi
  echo "ci_ros_distros: pip install -r requirements/robot.txt over this base installs nothing"
}

run_pytest() {  # $1 stage, $2 venv, $3 missing-ok, rest: pytest arguments
  local stage=$1 venv=$2 missing=$3
  shift 3
  # shellcheck disable=SC2086
  PYTHONPATH="$ROOT/scripts${PYTHONPATH:+:$PYTHONPATH}" COSMOS_CI_MISSING_OK=$missing \
    HYPOTHESIS_STORAGE_DIRECTORY="$ROOT/build/ci-hypothesis-$stage" \
    "$venv/bin/python" -m pytest -p no:model_fixtures -p ci_missing_ok -p no:cacheprovider \
    --hypothesis-seed=0 --junitxml="$ROOT/build/ci-$stage.xml" "$@" ${DISTRO_PYTEST_ARGS:-}
}

summary() {  # $1 stage, $2 venv, $3 rc, $4 seconds: one closing line from the junit file
  local line
  line=$("$2/bin/python" - "$ROOT/build/ci-$1.xml" "$1" <<'PY' 2>/dev/null
import sys
import xml.etree.ElementTree as ET
r = ET.parse(sys.argv[1]).getroot()
s = r if r.tag == "testsuite" else r.find("testsuite")
n, f, e, k = (int(s.get(a, 0)) for a in ("tests", "failures", "errors", "skipped"))
print(f"{sys.argv[2]}: {n - f - e - k} passed, {f + e} failed, {k} skipped")
PY
) || line="$1: 0 passed, 1 failed (stopped before the tests: see above)"
  echo "ci_ros_distros: $1 took $4 s (exit $3)"
  echo "$line"
  if [ -n "${CI_SUMMARY_FILE:-}" ]; then echo "$line" >>"$CI_SUMMARY_FILE"; fi
}

stage_jazzy() {
  local py venv=$ROOT/build/venv-jazzy
  py=$(find_python 3.12)
  rm -f "$ROOT/build/ci-jazzy.xml"
  VENV=$venv PYTHON=$py SETUP_REQUIREMENTS="requirements/jazzy-ci.txt requirements/robot.txt" \
    SETUP_BUILD_DIR=build/jazzy bash scripts/setup_env.sh
  robot_txt_installs_nothing "$venv"
  "$venv/bin/python" -c "import sys, numpy, importlib.metadata as m
print('ci_ros_distros: jazzy: Python', sys.version.split()[0], '| rclpy', m.version('ros-rclpy'),
      '| numpy', numpy.__version__, '| torch: none')"
  # the demo's policy/planner node needs torch; when it dies the supervisor stops the others, and their
  # shutdown lines can push its "No module named 'torch'" out of the failure text ci_missing_ok reads
  run_pytest jazzy "$venv" "$NO_TORCH" -q --deselect test/foundation/test_demo.py
}

stage_humble() {
  local py venv=$ROOT/build/venv-humble want
  py=$(find_python 3.10)
  rm -f "$ROOT/build/ci-humble.xml"
  want=$({ cat requirements/humble-ci.txt requirements/robot.txt requirements/assets-nodeps.txt setup.py
           echo "$py"; } | sha256sum | cut -c1-16)
  if [ -f "$venv/.cosmos_ci_stamp" ] && [ "$(cat "$venv/.cosmos_ci_stamp")" = "$want" ]; then
    echo "ci_ros_distros: venv-humble is up to date ($venv)"
  else
    echo "ci_ros_distros: creating $venv with $("$py" --version)"
    rm -rf "$venv"
    "$py" -m venv "$venv"
    local pip="$venv/bin/pip --disable-pip-version-check"
    quiet $pip install -q -r requirements/humble-ci.txt -r requirements/robot.txt
    quiet $pip install -q --no-deps -r requirements/assets-nodeps.txt
    quiet $pip install -q --no-deps --no-build-isolation -e . --config-settings editable_mode=compat
    echo "$want" >"$venv/.cosmos_ci_stamp"
  fi
  robot_txt_installs_nothing "$venv"
  "$venv/bin/python" -c "import sys, numpy
print('ci_ros_distros: humble: Python', sys.version.split()[0], '| numpy', numpy.__version__, '| no ROS, no torch')"
  "$venv/bin/python" scripts/ci_check_imports.py cosmos_policy_ros --missing-ok "$NO_TORCH,$NO_ROS"
  # test_install_tree builds the package with ament_cmake: a ROS test that is not marked `ros`
  run_pytest humble "$venv" "$NO_TORCH,$NO_ROS" -q -m "not ros" --deselect test/foundation/test_install_tree.py
}

failed=0
for stage in $STAGES; do
  case $stage in
    jazzy|humble) ;;
    *) echo "ci_ros_distros: unknown stage '$stage' (jazzy, humble)" >&2; exit 2 ;;
  esac
  echo "==== ci_ros_distros: stage $stage"
  t0=$SECONDS
  rc=0
  # in the background so that `set -e` holds inside the stage (it is off in a function called with ||)
  "stage_$stage" &
  wait $! || rc=$?
  summary "$stage" "$ROOT/build/venv-$stage" "$rc" $((SECONDS - t0))
  [ "$rc" -eq 0 ] || failed=1
done
exit $failed
