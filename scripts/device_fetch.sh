#!/usr/bin/env bash
# Here, before a device call (scripts/device_sim_crop.sh): what the lent GPU machine lacks, into folders that git
# ignores (.git/info/exclude) and the call carries. The machine has Python 3.12 with torch, numpy, h5py, yaml, PIL,
# matplotlib and tqdm, but no mujoco and no EGL loader libraries (the device tool's README). About 12 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
grep -qx '/.gl/' .git/info/exclude 2>/dev/null || echo '/.gl/' >> .git/info/exclude
mkdir -p .whl .gl
PLAT=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64 any; do
    PLAT+=(--platform "$p")
done
# mujoco and its imports (absl-py is there), gym-aloha for the ALOHA scene (--no-deps, as requirements/assets-nodeps.txt)
for pkg in mujoco==3.8.1 gym-aloha==0.1.5 glfw==2.11.0 etils==1.15.0 pyopengl==3.1.10; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${PLAT[@]}" \
        -d .whl "$pkg"
done
o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
mkdir -p /tmp/amd64/partial
apt-get "${o[@]}" update -qq
(cd .gl && apt-get "${o[@]}" download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
du -sh .whl .gl
