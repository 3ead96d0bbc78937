#!/bin/sh
# Make sure Fashion-MNIST is somewhere fastnn looks (see fastnn/datasets.py):
# already present -> nothing to do; otherwise Debian's package where apt-get
# works (no network to the upstream mirrors needed), else fastnn's own
# checksummed download into ~/.cache/fastnn.
PY=${PY:-python3}
if "$PY" -m fastnn data fashion_mnist --no-download 2>/dev/null; then
    exit 0
fi
if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
    if [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; then
        echo "installing Debian's dataset-fashion-mnist ..."
        $SUDO apt-get update -qq >/dev/null 2>&1
        $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
            echo "apt-get could not install dataset-fashion-mnist; trying the download"
    fi
fi
exec "$PY" -m fastnn data fashion_mnist
