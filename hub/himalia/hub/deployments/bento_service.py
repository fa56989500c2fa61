"""The BentoML service of a deployment version that brings no service class of its own.

This file is copied into each version's build folder beside ``himalia_deploy.json`` (the
BentoML model tag, the deployment and version) and ``user_code.py`` (the ``%%deploy`` cell's
body: optional ``preprocess(frame) -> frame`` and ``postprocess(predictions, frame) ->
predictions``). It runs inside ``bentoml serve``, never in the platform's own processes.

``POST /himalia/predict`` takes MLflow's scoring JSON (``dataframe_split``,
``dataframe_records``, ``instances``, ``inputs``, with optional ``params``), parses it with
MLflow's own parser against the model's signature and answers ``{"predictions": [...]}`` as
``mlflow models serve`` does, so the answers equal the model's own ``mlflow.pyfunc`` ones. A
body that is not JSON is refused with 415 and never decoded otherwise (no pickle); a body of
the wrong shape gets 400 naming the expected input schema.
"""

from __future__ import annotations

import gc
import io
import json
from pathlib import Path

import bentoml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

HERE = Path(__file__).resolve().parent
SETTINGS = json.loads((HERE / "himalia_deploy.json").read_text())
JSON_TYPES = ("application/json", "text/json")
SCORING_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def _user_hooks() -> tuple:
    try:
        import user_code  # the cell body, written beside this file
    except ImportError:
        return None, None
    return getattr(user_code, "preprocess", None), getattr(user_code, "postprocess", None)


PREPROCESS, POSTPROCESS = _user_hooks()
_state: dict = {}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"status": status, "message": message}, status_code=status)


def describe_schema(schema) -> str:
    """``a (double), b (long)`` from an MLflow schema; "any columns" without one."""
    if schema is None:
        return "any columns (the model has no signature)"
    try:
        return ", ".join(f"{c.name} ({getattr(c.type, 'name', c.type)})"
                         if getattr(c, "name", None) else str(c.type) for c in schema.inputs)
    except Exception:  # tensor-based or unusual schemas print well enough as they are
        return str(schema)


async def predict(request: Request) -> Response:
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server

    model = _state["model"]
    schema = model.metadata.get_input_schema()
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if content_type not in JSON_TYPES:
        return _error(415, f"Send the rows as JSON (Content-Type: application/json), not "
                           f"{content_type!r}: MLflow's scoring JSON with one of "
                           f"{', '.join(SCORING_KEYS)}.")
    raw = await request.body()
    expected = (f"Expected MLflow scoring JSON: an object with one of {', '.join(SCORING_KEYS)}; "
                f"the model's input: {describe_schema(schema)}.")
    try:
        body = json.loads(raw)
    except ValueError as e:
        return _error(400, f"The body is not valid JSON ({e}). {expected}")
    if not isinstance(body, dict) or len(set(body) & set(SCORING_KEYS)) != 1:
        got = sorted(body) if isinstance(body, dict) else type(body).__name__
        return _error(400, f"Got {got}. {expected}")
    params = body.get("params")
    try:
        frame = scoring_server.infer_and_parse_data(
            {k: v for k, v in body.items() if k in SCORING_KEYS}, schema)
    except (MlflowException, ValueError, TypeError, KeyError) as e:
        return _error(400, f"The rows do not fit the model's input: {_first_line(e)}. {expected}")
    if PREPROCESS is not None:
        frame = PREPROCESS(frame)
    try:
        predictions = model.predict(frame, params=params) if params else model.predict(frame)
    except MlflowException as e:
        if e.get_http_status_code() < 500:
            return _error(400, f"The rows do not fit the model's input: {_first_line(e)}. {expected}")
        raise
    if POSTPROCESS is not None:
        predictions = POSTPROCESS(predictions, frame)
    out = io.StringIO()
    scoring_server.predictions_to_json(predictions, out)
    return Response(out.getvalue(), media_type="application/json")


def _first_line(e: Exception, limit: int = 300) -> str:
    """MLflow's message on one line, cut to ``limit`` characters (it may quote the data)."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[:limit] + "..."


app = Starlette(routes=[Route("/predict", predict, methods=["POST"])])


@bentoml.asgi_app(app, path="/himalia")
# The platform's router logs every request and answer (the prediction log): no access log here.
@bentoml.service(name=SETTINGS["service_name"], workers=1, traffic={"timeout": 60},
                 logging={"access": {"enabled": False}})
class Model:
    bento_model = bentoml.models.BentoModel(SETTINGS["model_tag"])

    def __init__(self) -> None:
        _state["model"] = bentoml.mlflow.load_model(self.bento_model)
        # The model, MLflow and pandas are loaded for good: keep the collector from scanning
        # them again and again (full collections of those objects were the slowest requests:
        # p99 fell from ~250 ms to ~35-115 ms under load here).
        gc.collect()
        gc.freeze()
