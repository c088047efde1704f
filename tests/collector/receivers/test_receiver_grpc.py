"""The OTLP/gRPC receiver against real clients: the OpenTelemetry SDK's gRPC exporters and raw
grpcio calls carrying hostile bytes. Every bad call is followed by a good one that must succeed."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)

from collector import telemetry
from collector.component import Signal
from collector.receivers.otlp import OtlpReceiver
from tests.collector.receivers.test_receiver_http import (
    TRACE_ID,
    RecordingConsumer,
    assert_sdk_data_arrived,
    make_pki,
    send_with_sdk,
    start_receiver,
    wait_until_refused,
)
from tests.support.otlp_factory import logs

LIMIT_MIB = 1
METHODS = {
    Signal.LOGS: "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    Signal.METRICS: "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    Signal.TRACES: "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
}


@pytest.fixture(scope="module")
def consumer() -> RecordingConsumer:
    return RecordingConsumer()


@pytest.fixture(scope="module")
def receiver(consumer: RecordingConsumer) -> Iterator[OtlpReceiver]:
    rx = start_receiver(
        {"grpc": {"endpoint": "127.0.0.1:0", "max_recv_msg_size_mib": LIMIT_MIB}}, consumer
    )
    yield rx
    rx.shutdown()


@pytest.fixture(autouse=True)
def _fresh_consumer(consumer: RecordingConsumer) -> None:
    consumer.reset()


@pytest.fixture
def port(receiver: OtlpReceiver) -> int:
    assert receiver.grpc_port
    return receiver.grpc_port


@pytest.fixture(scope="module")
def channel(receiver: OtlpReceiver) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{receiver.grpc_port}") as ch:
        yield ch


def call(
    channel: grpc.Channel,
    signal: Signal,
    body: bytes,
    metadata: tuple[tuple[str, str], ...] = (),
    compression: grpc.Compression | None = None,
) -> bytes:
    """A raw unary call with bytes in and bytes out, as no well-behaved stub would send them."""
    method = channel.unary_unary(METHODS[signal], request_serializer=None,
                                 response_deserializer=None)
    return method(body, timeout=30, metadata=metadata, compression=compression)  # type: ignore[no-any-return]


def expect_error(code: grpc.StatusCode, fn: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        fn()
    assert info.value.code() == code, info.value.details()
    return info.value


def assert_still_serving(channel: grpc.Channel, consumer: RecordingConsumer) -> None:
    before = len(consumer.of(Signal.LOGS))
    response = ExportLogsServiceResponse.FromString(
        call(channel, Signal.LOGS, logs(2, marker="ok").SerializeToString())
    )
    assert not response.HasField("partial_success")
    assert len(consumer.of(Signal.LOGS)) == before + 1
    assert consumer.of(Signal.LOGS)[-1] == logs(2, marker="ok")


def grpc_exporters(port: int, **kwargs: Any) -> Callable[[str], Any]:
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    classes = {"logs": OTLPLogExporter, "traces": OTLPSpanExporter, "metrics": OTLPMetricExporter}
    kwargs.setdefault("insecure", True)

    def make(kind: str) -> Any:
        return classes[kind](endpoint=f"127.0.0.1:{port}", timeout=10, **kwargs)  # type: ignore[operator]

    return make


# --------------------------------------------------------------------------------------------
# Real SDK exporters
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", [None, grpc.Compression.Gzip])
def test_sdk_grpc_exporters_deliver_every_signal(
    port: int, consumer: RecordingConsumer, compression: grpc.Compression | None
) -> None:
    sent = send_with_sdk(grpc_exporters(port, compression=compression))
    assert_sdk_data_arrived(consumer, sent)


def test_sdk_exporter_honours_retry_info_then_delivers(
    port: int, consumer: RecordingConsumer
) -> None:
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

    consumer.refuse_times = 1
    consumer.retry_after = 0.2
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(grpc_exporters(port)("logs")))
    provider.get_logger("t").emit(body="kept by the client, sent again")
    provider.shutdown()
    assert consumer.refuse_times == 0
    (data,) = consumer.of(Signal.LOGS)
    assert data.resource_logs[0].scope_logs[0].log_records[0].body.string_value == (
        "kept by the client, sent again"
    )


# --------------------------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------------------------


def test_backpressure_is_resource_exhausted_with_retry_info(
    channel: grpc.Channel, consumer: RecordingConsumer
) -> None:
    consumer.refuse_times = 1
    consumer.retry_after = 2.5
    error = expect_error(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        lambda: call(channel, Signal.LOGS, logs(3).SerializeToString()),
    )
    assert "exporter queue full" in error.details()
    status = rpc_status.from_call(error)  # the standard grpc-status-details-bin trailer
    assert status is not None and status.code == code_pb2.RESOURCE_EXHAUSTED
    info = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info)
    assert info.retry_delay.ToNanoseconds() == 2_500_000_000
    trailers = dict(error.trailing_metadata())
    python_sdk_info = error_details_pb2.RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"])
    assert python_sdk_info == info
    assert consumer.of(Signal.LOGS) == []
    assert_still_serving(channel, consumer)


def test_partial_success(channel: grpc.Channel, consumer: RecordingConsumer) -> None:
    consumer.reject = 4
    metrics_body = (
        b'{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m","gauge":'
        b'{"dataPoints":[{"asInt":"1"},{"asInt":"2"},{"asInt":"3"},{"asInt":"4"}]}}]}]}]}'
    )
    from collector import otlp_json

    request = otlp_json.decode(Signal.METRICS, metrics_body)
    response = ExportMetricsServiceResponse.FromString(
        call(channel, Signal.METRICS, request.SerializeToString())
    )
    assert response.partial_success.rejected_data_points == 4
    assert response.partial_success.error_message == "4 items were invalid"
    assert consumer.of(Signal.METRICS) == [request]


def test_pipeline_failure_is_internal(channel: grpc.Channel, consumer: RecordingConsumer) -> None:
    consumer.fail = True
    expect_error(grpc.StatusCode.INTERNAL,
                 lambda: call(channel, Signal.LOGS, logs(1).SerializeToString()))
    consumer.fail = False
    assert_still_serving(channel, consumer)


def test_empty_request_is_ok_without_calling_the_pipeline(
    channel: grpc.Channel, consumer: RecordingConsumer
) -> None:
    assert call(channel, Signal.TRACES, b"") == b""
    assert consumer.received == []


def test_signal_without_pipeline_is_unimplemented() -> None:
    only_logs = RecordingConsumer()
    rx = start_receiver({"grpc": {"endpoint": "127.0.0.1:0"}}, only_logs, signals=(Signal.LOGS,))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{rx.grpc_port}") as ch:
            error = expect_error(grpc.StatusCode.UNIMPLEMENTED,
                                 lambda: call(ch, Signal.TRACES, b""))
            assert "no traces pipeline" in error.details()
            assert_still_serving(ch, only_logs)
    finally:
        rx.shutdown()


# --------------------------------------------------------------------------------------------
# Bad calls
# --------------------------------------------------------------------------------------------


def test_undecodable_payloads_are_invalid_argument(
    channel: grpc.Channel, consumer: RecordingConsumer
) -> None:
    span = {"trace_id": bytes.fromhex(TRACE_ID), "span_id": b"\1" * 8, "name": "x", "kind": 2}
    from collector.component import TracesData

    traces = TracesData(resource_spans=[{"scope_spans": [{"spans": [span]}]}])
    short_id = TracesData(resource_spans=[{"scope_spans": [{"spans": [
        {**span, "trace_id": b"\1" * 5}
    ]}]}])
    cases = [
        (Signal.LOGS, traces.SerializeToString(), "ExportLogsServiceRequest"),
        (Signal.TRACES, logs(2).SerializeToString(), "wrong wire type"),
        (Signal.LOGS, logs(3).SerializeToString()[:-5], "cannot decode"),
        (Signal.METRICS, b"\xff" * 9, "cannot decode"),
        (Signal.TRACES, short_id.SerializeToString(), "trace_id: must be 16 bytes"),
        (Signal.LOGS, b"\x38\x01", "only unknown fields"),  # field 7 varint: nothing of ours
    ]
    before = telemetry.value(
        "agentwatch_receiver_refused_requests_total", receiver="otlp", transport="grpc",
        reason="bad_payload",
    )
    for signal, body, words in cases:
        error = expect_error(grpc.StatusCode.INVALID_ARGUMENT,
                             lambda s=signal, b=body: call(channel, s, b))  # type: ignore[misc]
        assert words in error.details(), error.details()
        assert_still_serving(channel, consumer)
    assert telemetry.value(
        "agentwatch_receiver_refused_requests_total", receiver="otlp", transport="grpc",
        reason="bad_payload",
    ) == before + len(cases)
    assert len(consumer.of(Signal.LOGS)) == len(cases)  # only the good calls


def test_messages_over_the_limit_are_refused_even_when_gzip_hides_their_size(
    channel: grpc.Channel, consumer: RecordingConsumer
) -> None:
    too_big = logs(1, padding="x" * (LIMIT_MIB * 1024 * 1024)).SerializeToString()
    expect_error(grpc.StatusCode.RESOURCE_EXHAUSTED, lambda: call(channel, Signal.LOGS, too_big))
    assert len(gzip.compress(too_big)) < 20_000
    expect_error(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        lambda: call(channel, Signal.LOGS, too_big, compression=grpc.Compression.Gzip),
    )
    assert consumer.received == []
    assert_still_serving(channel, consumer)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    signal=st.sampled_from(list(Signal)),
    body=st.one_of(
        st.binary(max_size=1024),
        st.builds(
            lambda cut, flips: bytes(
                b ^ flips.get(i, 0)
                for i, b in enumerate(logs(3, model="m").SerializeToString()[:cut])
            ),
            st.integers(0, 400),
            st.dictionaries(st.integers(0, 400), st.integers(1, 255), max_size=6),
        ),
    ),
)
def test_fuzzed_calls_get_ok_or_invalid_argument_and_the_server_keeps_serving(
    channel: grpc.Channel, consumer: RecordingConsumer, signal: Signal, body: bytes
) -> None:
    try:
        call(channel, signal, body)
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert_still_serving(channel, consumer)


# --------------------------------------------------------------------------------------------
# Auth, TLS, shutdown
# --------------------------------------------------------------------------------------------


def test_bearer_token() -> None:
    authed = RecordingConsumer()
    rx = start_receiver(
        {"grpc": {"endpoint": "127.0.0.1:0", "auth": {"bearer_tokens": ["s3cret"]}}},
        authed,
        name="otlp/grpc-auth",
    )
    try:
        assert rx.grpc_port
        body = logs(1).SerializeToString()
        with grpc.insecure_channel(f"127.0.0.1:{rx.grpc_port}") as ch:
            for metadata in ((), (("authorization", "Bearer nope"),),
                             (("authorization", "s3cret"),)):
                expect_error(grpc.StatusCode.UNAUTHENTICATED,
                             lambda m=metadata: call(ch, Signal.LOGS, body, m))  # type: ignore[misc]
            assert authed.received == []
            call(ch, Signal.LOGS, body, (("authorization", "Bearer s3cret"),))
        sent = send_with_sdk(
            grpc_exporters(rx.grpc_port, headers={"authorization": "Bearer s3cret"})
        )
        assert len(authed.of(Signal.LOGS)) == 2
        assert sent["metric_result"] == ["SUCCESS"]
        assert telemetry.value(
            "agentwatch_receiver_refused_requests_total", receiver="otlp/grpc-auth",
            transport="grpc", reason="unauthenticated",
        ) == 3
    finally:
        rx.shutdown()


def test_tls_with_client_certificates(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    secured = RecordingConsumer()
    rx = start_receiver(
        {
            "grpc": {
                "endpoint": "127.0.0.1:0",
                "tls": {
                    "cert_file": str(pki["server_cert"]),
                    "key_file": str(pki["server_key"]),
                    "client_ca_file": str(pki["ca"]),
                },
            }
        },
        secured,
        name="otlp/grpc-tls",
    )
    try:
        assert rx.grpc_port
        ca = pki["ca"].read_bytes()
        with_client_cert = grpc.ssl_channel_credentials(
            root_certificates=ca,
            private_key=pki["client_key"].read_bytes(),
            certificate_chain=pki["client_cert"].read_bytes(),
        )
        sent = send_with_sdk(
            grpc_exporters(rx.grpc_port, insecure=False, credentials=with_client_cert)
        )
        assert_sdk_data_arrived(secured, sent)
        body = logs(1).SerializeToString()
        without = grpc.ssl_channel_credentials(root_certificates=ca)
        with grpc.secure_channel(f"127.0.0.1:{rx.grpc_port}", without) as ch:
            expect_error(grpc.StatusCode.UNAVAILABLE, lambda: call(ch, Signal.LOGS, body))
        with grpc.insecure_channel(f"127.0.0.1:{rx.grpc_port}") as ch:
            expect_error(grpc.StatusCode.UNAVAILABLE, lambda: call(ch, Signal.LOGS, body))
        with grpc.secure_channel(f"127.0.0.1:{rx.grpc_port}", with_client_cert) as ch:
            call(ch, Signal.LOGS, body)
        assert len(secured.of(Signal.LOGS)) == 2
    finally:
        rx.shutdown()


def test_shutdown_lets_the_call_in_flight_finish_and_stops_listening() -> None:
    slow = RecordingConsumer()
    rx = start_receiver({"grpc": {"endpoint": "127.0.0.1:0"}}, slow)
    target = f"127.0.0.1:{rx.grpc_port}"
    slow.gate.clear()
    result: dict[str, Any] = {}
    with grpc.insecure_channel(target) as ch:
        sender = threading.Thread(
            target=lambda: result.update(answer=call(ch, Signal.LOGS, logs(1).SerializeToString()))
        )
        sender.start()
        assert slow.entered.wait(10)
        stopper = threading.Thread(target=rx.shutdown)
        stopper.start()
        assert rx.grpc_port
        wait_until_refused(rx.grpc_port)  # shutdown has stopped listening
        assert stopper.is_alive()  # waiting for the call in flight
        slow.gate.set()
        sender.join(10)
        stopper.join(10)
        assert not stopper.is_alive()
    assert result["answer"] == b""
    assert len(slow.of(Signal.LOGS)) == 1
    with grpc.insecure_channel(target) as ch:
        expect_error(grpc.StatusCode.UNAVAILABLE, lambda: call(ch, Signal.LOGS, b""))


def test_port_in_use_fails_start_clearly(receiver: OtlpReceiver) -> None:
    with pytest.raises(RuntimeError, match="cannot listen"):
        start_receiver({"grpc": {"endpoint": f"127.0.0.1:{receiver.grpc_port}"}},
                       RecordingConsumer())


def test_both_protocols_on_one_receiver() -> None:
    both = RecordingConsumer()
    rx = start_receiver(
        {"grpc": {"endpoint": "127.0.0.1:0"}, "http": {"endpoint": "127.0.0.1:0"}}, both
    )
    try:
        assert rx.grpc_port and rx.http_port and rx.grpc_port != rx.http_port
        with grpc.insecure_channel(f"127.0.0.1:{rx.grpc_port}") as ch:
            call(ch, Signal.LOGS, logs(1).SerializeToString())
        from tests.collector.receivers.test_receiver_http import JSON, json_log, post

        assert post(rx.http_port, "/v1/logs", json_log("x"), {"Content-Type": JSON})[0] == 200
        assert len(both.of(Signal.LOGS)) == 2
    finally:
        rx.shutdown()
    rx.shutdown()  # idempotent
