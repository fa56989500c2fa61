"""Build one deployment version's bento: ``python -m himalia.hub.deployments.build``.

Run by the deployment manager as the deployment's owner (their Unix account when the platform
runs as root), with ``MLFLOW_TRACKING_URI``/``MLFLOW_TRACKING_TOKEN`` of the owner and the
deployment's own ``BENTOML_HOME``. It imports the MLflow model into the BentoML store
(``bentoml.mlflow``), writes the service's build folder (the generic service of
bento_service.py, or the ``%%deploy`` cell's own service class) in ``HIMALIA_BUILD_FOLDER`` and
builds the bento. What to build is the JSON in ``HIMALIA_BUILD_SPEC``. Its last line of output
is the result, ``HIMALIA_BUILD_RESULT {"bento_tag", "model_tag", "predict_path", "smoke"}``,
where ``smoke`` is the model's serving input example (the first request the version must
answer) or null; the rest goes to the version's build log.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

GENERIC_PREDICT_PATH = "/himalia/predict"
CUSTOM_PREDICT_PATH = "/predict"
RESULT_MARKER = "HIMALIA_BUILD_RESULT "
MAX_SMOKE_BYTES = 1024 * 1024


def build(spec: dict) -> dict:
    import bentoml

    folder = Path(os.environ["HIMALIA_BUILD_FOLDER"])
    name, version = spec["name"], spec["version"]
    print(f"importing {spec['model_uri']} into the BentoML store", flush=True)
    model = bentoml.mlflow.import_model(
        f"{name}-model", spec["model_uri"],
        labels={"himalia.deployment": name, "himalia.version": str(version)},
        metadata={"model_uri": spec["model_uri"]},
    )
    model_tag = str(model.tag)
    print(f"model {model_tag}", flush=True)
    example = Path(model.path) / "mlflow_model" / "serving_input_example.json"
    smoke = json.loads(example.read_text()) if example.is_file() else None
    if smoke is not None and len(json.dumps(smoke)) > MAX_SMOKE_BYTES:
        print("the input example is over 1 MB: no smoke request", flush=True)
        smoke = None

    source = folder / "build"
    shutil.rmtree(source, ignore_errors=True)
    source.mkdir()
    shutil.copyfile(Path(__file__).with_name("bento_service.py"), source / "himalia_service.py")
    (source / "himalia_deploy.json").write_text(json.dumps(
        {"service_name": f"himalia-{name}", "model_tag": model_tag}))
    (source / "user_code.py").write_text(spec.get("service_code") or "")
    os.environ["HIMALIA_MODEL_TAG"] = model_tag
    custom = spec.get("service_class")
    entry = f"user_code:{custom}" if custom else "himalia_service:Model"
    bento_tag = f"{name}:v{version}"
    try:
        bentoml.bentos.delete(bento_tag)  # a version rebuilt after a failed start
    except bentoml.exceptions.NotFound:
        pass
    print(f"building bento {bento_tag} from {entry}", flush=True)
    sys.path.insert(0, str(source))
    bento = bentoml.bentos.build(
        entry, name=name, version=f"v{version}", build_ctx=str(source),
        include=["*.py", "*.json"], labels={"himalia.deployment": name, "himalia.version": str(version)},
        # Served from this store by the platform's own Python; no package index is needed (a
        # container image for the Kubernetes back end locks them when it is built).
        python={"lock_packages": False},
    )
    if custom:
        # A service class of its own takes its own input: the cell's EXAMPLE, if it sets one,
        # is its smoke request (the model's MLflow example would not fit).
        import user_code

        smoke = getattr(user_code, "EXAMPLE", None)
    result = {"bento_tag": str(bento.tag), "model_tag": model_tag,
              "predict_path": CUSTOM_PREDICT_PATH if custom else GENERIC_PREDICT_PATH,
              "smoke": smoke}
    print(f"built {bento.tag}", flush=True)
    return result


def main() -> int:
    result = build(json.loads(os.environ["HIMALIA_BUILD_SPEC"]))
    print(RESULT_MARKER + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
