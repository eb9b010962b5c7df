"""``DataPlane``: one request, decode -> engine -> encode, streaming included, whatever the transport.

::

    plane = DataPlane(explainer, model_name="smollm2")
    for reply in plane.serve(REST, Call(body, "application/json", url_kind="explain")):
        send(reply)  # stream events (reply.final is False) as they come, then the final reply

``serve`` is the same for every transport: it counts and times the call (``ecco_serving.metrics``),
lets the transport's adapter produce the replies (``Transport.replies``, which uses ``decode`` and
``run``), and on any failure maps the error once (``ecco_codec.status_for``), logs an internal error
with its traceback, hands the ``Failure`` to the metrics and ends with the adapter's failure reply.
It never raises for a call's failure, so one call cannot fail the others of a batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

from ecco_codec import (
    Decoded,
    decode_request,
    encode_explanation,
    encode_generation,
    encode_stream_row,
    encode_stream_summary,
    encode_stream_token,
    status_for,
)
from ecco_engine import AttributionRow, Explainer, GeneratedToken, Timing
from ecco_serving.metrics import EccoMetrics, ObservedRequest, observe_request

from .calls import Call, Reply, to_reply
from .transport import Transport

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """A decoded request and the data plane's stage timings so far (``decode``)."""

    decoded: Decoded
    timings: tuple[Timing, ...]


class DataPlane:
    """The engine of one loaded model behind the codec; holds nothing between requests."""

    def __init__(self, explainer: Explainer, model_name: str, *, metrics: EccoMetrics | None = None) -> None:
        self.explainer = explainer
        self.model_name = model_name
        self.metrics = metrics  # None: the process-wide metrics (ecco_serving.metrics.default_metrics)

    def serve(self, transport: Transport, call: Call) -> Iterator[Reply]:
        """Every reply of ``call`` over ``transport``: stream events, then one final reply (also on failure).

        The metrics are recorded before the final reply is yielded.
        """
        with observe_request(
            self.model_name, call.url_kind, transport=transport.name, metrics=self.metrics
        ) as observed:
            final: Reply | None = None
            streamed = False
            try:
                for reply in transport.replies(self, call, observed):
                    if reply.final:
                        final = reply
                    else:
                        streamed = True
                        yield reply
                if final is None:
                    raise RuntimeError(f"the {transport.name} adapter gave no final reply")
            except Exception as error:  # every failure becomes this call's final reply
                failure = status_for(error)
                if failure.status >= 500:
                    logger.exception("request failed", exc_info=error)
                observed.set_status(failure.status, error)
                final = transport.failed(failure, call, streamed=streamed)
        yield final

    def decode(self, call: Call, observed: ObservedRequest) -> Job:
        """``call``'s body as a validated request (timed as stage ``decode``); raises ``InvalidRequest``."""
        start = time.perf_counter()
        decoded = decode_request(call.body, content_type=call.content_type, url_kind=call.url_kind)
        timings = (Timing("decode", time.perf_counter() - start),)
        observed.describe(decoded.kind, decoded.request.attribution.methods)
        return Job(decoded, timings)

    def run(self, job: Job, observed: ObservedRequest, *, json_lines: bool = False) -> Iterator[Reply]:
        """The engine's answer to ``job`` in the request's wire: the final reply or, for a stream
        (``decoded.stream``), each token as generated and each attribution row as computed, then the
        summary. ``json_lines``: a stream's JSON messages end with a newline (REST's JSON lines)."""
        if job.decoded.stream:
            yield from self._stream(job, observed, json_lines)
            return
        decoded, explainer = job.decoded, self.explainer
        if decoded.kind == "explain":
            explanation = explainer.explain(decoded.request)
            observed.observe_result(explanation, job.timings)
            with observed.stage("encoding"):
                reply = to_reply(
                    encode_explanation(
                        explanation, decoded, model_name=self.model_name, extra_timings=job.timings,
                        tokenizer=explainer.tokenizer,
                    )
                )  # fmt: skip
        else:
            generation = explainer.generate(decoded.request)
            observed.observe_result(generation, job.timings)
            with observed.stage("encoding"):
                reply = to_reply(
                    encode_generation(generation, decoded, model_name=self.model_name, extra_timings=job.timings)
                )
        yield reply

    def _stream(self, job: Job, observed: ObservedRequest, line: bool) -> Iterator[Reply]:
        decoded = job.decoded
        # generate: tokens, then the GenerationResult; explain: tokens, rows, then the Explanation
        for event in self.explainer.stream(decoded.request, attribute=decoded.kind == "explain"):
            if isinstance(event, GeneratedToken):
                yield to_reply(encode_stream_token(event, decoded), line=line, final=False)
            elif isinstance(event, AttributionRow):
                yield to_reply(encode_stream_row(event, decoded), line=line, final=False)
            else:  # the result, always last
                observed.observe_result(event, job.timings)
                with observed.stage("encoding"):
                    summary = encode_stream_summary(
                        event, decoded, model_name=self.model_name, extra_timings=job.timings,
                        tokenizer=self.explainer.tokenizer,
                    )  # fmt: skip
                    reply = to_reply(summary, line=line)
                yield reply
                return
        raise RuntimeError("the engine's stream ended without its result")
