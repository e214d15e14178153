"""`/metrics`: Prometheus's scrape target, at the app's root where scrapers look for it."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from pocketqueue.api.auth import ReadAccess
from pocketqueue.api.deps import RuntimeDep
from pocketqueue.api.openapi import problem_responses
from pocketqueue.observe.metrics import CONTENT_TYPE, render_metrics

router = APIRouter(tags=["metrics"])


class PrometheusText(Response):
    """Prometheus's text exposition format, version 0.0.4."""

    media_type = CONTENT_TYPE


@router.get(
    "/metrics",
    dependencies=[ReadAccess],
    response_class=PrometheusText,
    responses={
        200: {
            "description": "Every metric, cluster-wide (read from Redis: any API process answers the same)",
            "content": {CONTENT_TYPE: {"schema": {"type": "string"}}},
        },
        **problem_responses(503),
    },
)
async def read_metrics(runtime: RuntimeDep) -> PrometheusText:
    """Counters, histograms and gauges in celery-exporter's names, plus PocketQueue's own."""
    body = await render_metrics(runtime.redis, runtime.store.keys, runtime.settings)
    return PrometheusText(body)
