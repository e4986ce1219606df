#!/usr/bin/env bash
# Create or refresh the dev environment: .venv with pinned PyPI ROS 2 (Kilted) wheels, torch (CPU),
# the other dependencies, the generated interfaces (msg/, srv/ and the dev copy of two Interbotix
# messages) built into the venv prefix, and this package installed editable.
# Idempotent: does nothing when the inputs have not changed since the last successful run.
#
# The same steps make the other CI venvs (scripts/ci_ros_distros.sh) when these are set; unset, the
# dev venv is made exactly as always:
#   VENV                      venv folder (default .venv)
#   PYTHON                    interpreter that creates it (default python3.11, else python3)
#   SETUP_REQUIREMENTS        requirement files, one pip call (default ros.txt base.txt dev.txt)
#   SETUP_NODEPS_REQUIREMENTS installed with --no-deps (default assets-nodeps.txt; "" for none)
#   SETUP_BUILD_DIR           cmake build folders for the interfaces (default build)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${VENV:-$ROOT/.venv}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
REQS=${SETUP_REQUIREMENTS:-requirements/ros.txt requirements/base.txt requirements/dev.txt}
NODEPS_REQS=${SETUP_NODEPS_REQUIREMENTS-requirements/assets-nodeps.txt}
BUILD=${SETUP_BUILD_DIR:-build}

stamp_inputs() {
  # shellcheck disable=SC2086  # word splitting of the requirement lists is intended
  { cat $REQS $NODEPS_REQS CMakeLists.txt package.xml setup.py cmake/*.cmake msg/* srv/* \
      dev/interbotix_xs_msgs/CMakeLists.txt dev/interbotix_xs_msgs/package.xml dev/interbotix_xs_msgs/msg/* \
      dev/interbotix_xs_msgs/srv/* \
      cosmos_policy_ros/__init__.py scripts/setup_env.sh
    echo "$PY|$REQS|$NODEPS_REQS|$BUILD"; } | sha256sum | cut -c1-16
}
STAMP="$VENV/.cosmos_setup_stamp"
want=$(stamp_inputs)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  echo "setup: $(basename "$VENV") is up to date ($VENV)"
  exit 0
fi

for tool in cmake gcc g++; do
  command -v $tool >/dev/null 2>&1 || { echo "setup: '$tool' is missing; install it (Debian: apt-get install cmake build-essential)" >&2; exit 1; }
done

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV with $($PY --version)"
  "$PY" -m venv "$VENV"
fi
PIP="$VENV/bin/pip --disable-pip-version-check"
echo "setup: installing pinned dependencies (first run takes ~2 min)"
quiet() {  # this machine's pip config names local index folders that may not exist: drop that noise
  "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}
req_args=()
for r in $REQS; do req_args+=(-r "$r"); done
quiet $PIP install -q "${req_args[@]}"
for r in $NODEPS_REQS; do quiet $PIP install -q --no-deps -r "$r"; done

# Editable install first: pip would otherwise uninstall the generated modules, which ament
# registers under the same distribution name.
echo "setup: installing cosmos_policy_ros (editable)"
quiet $PIP install -q --no-deps --no-build-isolation -e . --config-settings editable_mode=compat

echo "setup: building interfaces into the venv prefix"
build_iface() {  # $1 source dir, $2 build dir, extra cmake args...
  local src=$1 bld=$2; shift 2
  cmake -S "$src" -B "$bld" -DCMAKE_INSTALL_PREFIX="$VENV" -DCMAKE_PREFIX_PATH="$VENV" \
    -DPython3_EXECUTABLE="$VENV/bin/python" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF "$@" >"$bld.log" 2>&1 \
    && cmake --build "$bld" -j"$(nproc)" >>"$bld.log" 2>&1 \
    && cmake --install "$bld" >>"$bld.log" 2>&1 \
    || { echo "setup: interface build failed for $src; log: $bld.log" >&2; tail -30 "$bld.log" >&2; exit 1; }
}
mkdir -p "$BUILD"
# The venv python must run the generators (they import catkin_pkg, em, numpy from the venv).
export PATH="$VENV/bin:$PATH" AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
build_iface dev/interbotix_xs_msgs "$BUILD/interbotix_xs_msgs"
build_iface . "$BUILD/cosmos_policy_ros" -DINSTALL_PYTHON_SOURCES=OFF
# ament's egg-info for the generated half would shadow the editable install's metadata.
rm -rf "$VENV"/lib/python3*/site-packages/cosmos_policy_ros-*.egg-info


"$VENV/bin/python" - <<'PY'
import cosmos_policy_ros, rclpy
from cosmos_policy_ros.msg import ActionChunk
from interbotix_xs_msgs.msg import JointGroupCommand
print("setup: ok: rclpy", rclpy.__file__.split("/site-packages/")[0].rsplit("/", 3)[-3], "| msgs import")
PY
echo "$want" > "$STAMP"
