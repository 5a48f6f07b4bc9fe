#!/usr/bin/env bash
# device-check.sh: run on a machine with an NVIDIA GPU, from the repository
# root, after `make build` (it builds nothing). It prints what nemoclaw finds,
# then, in a sandbox with --gpus all and the default seccomp filter and
# Landlock ruleset, runs nvidia-smi and a Python ctypes program that calls
# cuInit and cuMemAlloc on libcuda.so.1.
set -u
BIN=${NEMOCLAW_BIN:-bin/nemoclaw}
export NEMOCLAW_HOME=${NEMOCLAW_HOME:-$(mktemp -d)}
[ -x "$BIN" ] || { echo "device-check: $BIN missing: run make build first" >&2; exit 2; }

echo "== nemoclaw gpu"
"$BIN" gpu
echo "== nemoclaw doctor (GPU lines)"
"$BIN" doctor | grep -E 'nvml|gpu:' || true

echo "== sandbox --gpus all: nvidia-smi"
"$BIN" sandbox run --no-tty --gpus all -- nvidia-smi
echo "rc=$?"

echo "== sandbox --gpus all: cuInit + cuMemAlloc (python3 ctypes)"
read -r -d '' PROG <<'PY'
import ctypes, sys
cuda = ctypes.CDLL("libcuda.so.1")
def check(name, rc):
    print(f"{name} = {rc}", flush=True)
    if rc != 0:
        msg = ctypes.c_char_p()
        cuda.cuGetErrorString(rc, ctypes.byref(msg))
        print(f"  {msg.value.decode() if msg.value else '?'}")
        sys.exit(1)
check("cuInit(0)", cuda.cuInit(0))
n = ctypes.c_int()
check("cuDeviceGetCount", cuda.cuDeviceGetCount(ctypes.byref(n)))
print(f"devices: {n.value}")
dev = ctypes.c_int()
check("cuDeviceGet(0)", cuda.cuDeviceGet(ctypes.byref(dev), 0))
name = ctypes.create_string_buffer(128)
cuda.cuDeviceGetName(name, 128, dev)
print(f"device 0: {name.value.decode()}")
ctx = ctypes.c_void_p()
check("cuCtxCreate", cuda.cuCtxCreate_v2(ctypes.byref(ctx), 0, dev))
ptr = ctypes.c_uint64()
check("cuMemAlloc(256 MiB)", cuda.cuMemAlloc_v2(ctypes.byref(ptr), 256 << 20))
check("cuMemsetD8", cuda.cuMemsetD8_v2(ptr, 0x5a, 256 << 20))
check("cuMemFree", cuda.cuMemFree_v2(ptr))
print("CUDA OK inside the sandbox")
PY
"$BIN" sandbox run --no-tty --gpus all -- python3 -c "$PROG"
echo "rc=$?"
echo "== sandbox log (gpu lines)"
grep -h -i gpu "$NEMOCLAW_HOME"/sandboxes/*/*.log 2>/dev/null | tail -20 || true
