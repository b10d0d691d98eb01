"""A stand-in for `python -m DiffusionSegLib run --request job.json` that speaks the job contract.

Behaviour from request params: mode = ok | slow | crash | killed | error | empty | noresult | malformed;
threshold (scalar) — label 1 where the value is above it, label 2 where above 2*threshold;
RGB input: label 1 where red > 128. Geometry is copied from the input (as the real worker does).
"""

import json
import os
import subprocess
import sys
import time

import numpy as np
import SimpleITK as sitk


def emit(**event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def main():
    request = json.load(open(sys.argv[sys.argv.index("--request") + 1]))
    params = request["params"]
    mode = params.get("mode", "ok")
    emit(event="log", level="info", message=f"fake worker {mode} pid {os.getpid()} cwd {os.getcwd()}")
    print("not json: a stray line from some library")
    if mode == "crash":
        sys.stderr.write("Traceback (most recent call last):\nRuntimeError: CUDA driver exploded\n")
        sys.stderr.flush()
        os._exit(1)
    if mode == "killed":   # a harmless library warning, then killed (the OOM killer, say)
        sys.stderr.write("To speed up loading, pip install accelerate\n")
        sys.stderr.flush()
        os.kill(os.getpid(), 9)
    if mode == "error":
        emit(event="error", code="model_not_found", message="Model folder /nowhere was not found.",
             hint="Check the model path.")
        return 4
    image = sitk.ReadImage(request["input"])
    array = sitk.GetArrayFromImage(image)
    if mode == "slow":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        emit(event="log", level="info", message=f"child {child.pid}")
        for step in range(600):
            emit(event="progress", stage="denoise", done=step, total=600, elapsed=step * 0.1)
            time.sleep(0.1)
    total = array.shape[0]
    for k in range(total):
        emit(event="progress", stage="segment", done=k + 1, total=total, elapsed=0.01 * k)
    labels = np.zeros(array.shape[:3], np.uint8)
    if image.GetNumberOfComponentsPerPixel() == 3:
        labels[array[..., 0] > 128] = 1
    elif mode != "empty":
        threshold = float(params.get("threshold", 50))
        labels[array > threshold] = 1
        labels[array > 2 * threshold] = 2
    out = sitk.GetImageFromArray(labels)
    out.CopyInformation(image)
    tmp = request["output"] + ".part.nrrd"
    sitk.WriteImage(out, tmp)
    os.replace(tmp, request["output"])
    if mode == "noresult":
        return 0
    if mode == "empty":  # as DiffusionSegLib.jobs.job does for an empty result
        emit(event="warning", message="The result is empty: no slice had evidence above the thresholds.")
    names = params.get("names") or [request.get("prompt") or "Segment"]
    segments = [{"label": i + 1, "name": n} for i, n in enumerate(names)]
    if mode == "malformed":   # a bad progress event and bad segment entries around the result
        emit(event="progress", stage="segment", done="three", total=None)
        segments = ["not a dict", {"label": "x"}, {"label": True, "name": "bool"}] + segments
    emit(event="result", output=request["output"], segments=segments)
    return 0


if __name__ == "__main__":
    sys.exit(main())
