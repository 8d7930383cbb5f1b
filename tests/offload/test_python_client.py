"""An independent client, generated from proto/ with grpcio-tools, proves that
non-Rust plant systems can enroll, identify, verify, sync and check health,
and that hostile bytes get the right status codes without harming the server."""

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

PERSONS = range(1, 11)


def enroll_orl(pb, channel, orl):
    gallery = pb["gallery_pb2_grpc"].GalleryServiceStub(channel)
    for person in PERSONS:
        frames = [pb["frames_pb2"].Frame(face_crop_image=orl(person, photo)) for photo in range(1, 6)]
        change = gallery.Enroll(pb["gallery_pb2"].EnrollRequest(operator_id=f"P{person:03}", frames=frames), timeout=10)
        assert change.template_count == 5
    return gallery


def test_enroll_identify_verify_and_sync(pb, server, orl):
    with server.channel() as channel:
        gallery = enroll_orl(pb, channel, orl)
        status = gallery.GetGalleryStatus(pb["gallery_pb2"].GetGalleryStatusRequest(), timeout=5)
        assert (status.operator_count, status.template_count, status.version) == (10, 50, 10)
        assert status.template_format.face_width == 92 and status.template_format.face_height == 112

        recognition = pb["recognition_pb2_grpc"].RecognitionServiceStub(channel)
        frame = pb["frames_pb2"].Frame
        # The server's calibrated threshold (0.1 % false accepts on ORL): most
        # bursts are recognised, a few are rejected, none is taken for someone else.
        correct = wrong = 0
        for person in PERSONS:
            burst = [frame(face_crop_image=orl(person, photo)) for photo in (6, 7, 8)]
            answer = recognition.Identify(pb["recognition_pb2"].IdentifyRequest(frames=burst, max_candidates=2), timeout=10)
            assert len(answer.frames) == 3
            assert all(f.status == pb["frames_pb2"].FrameOutcome.STATUS_MATCHED for f in answer.frames)
            assert answer.identified or answer.reason, "a rejection says why"
            correct += answer.identified and answer.operator_id == f"P{person:03}"
            wrong += answer.identified and answer.operator_id != f"P{person:03}"
        assert correct >= 7 and wrong == 0, f"{correct} right, {wrong} wrong of 10 bursts"

        # Raw pixels work as well as encoded crops: the crop's own template is at distance 0.
        raw = pb["frames_pb2"].RawFaceCrop(width=92, height=112, pixels=pgm_pixels(orl(3, 1)))
        answer = recognition.Identify(pb["recognition_pb2"].IdentifyRequest(frames=[frame(raw_face_crop=raw)], min_usable_frames=1), timeout=10)
        assert (answer.operator_id, answer.distance) == ("P003", 0.0)

        verdict = recognition.Verify(
            pb["recognition_pb2"].VerifyRequest(operator_id="P004", frames=[frame(face_crop_image=orl(4, p)) for p in (9, 10)]),
            timeout=10,
        )
        assert verdict.verified and verdict.votes == 2

        removed = gallery.RemoveOperator(pb["gallery_pb2"].RemoveOperatorRequest(operator_id="P001"), timeout=5)
        assert removed.gallery_version == 11
        events = list(gallery.SyncGallery(pb["gallery_pb2"].SyncGalleryRequest(since_version=9), timeout=10))
        kinds = [e.WhichOneof("event") for e in events]
        assert kinds == ["header", "upsert", "removal", "complete"], kinds
        assert events[1].upsert.operator_id == "P010" and len(events[1].upsert.templates) == 5
        assert events[2].removal.operator_id == "P001"
        assert events[3].complete.version == 11


def pgm_pixels(pgm):
    """The pixel bytes of a binary PGM with a plain header (as the ORL files are)."""
    fields, rest = pgm.split(maxsplit=4)[:4], pgm.split(maxsplit=4)[4]
    assert fields[0] == b"P5" and fields[1:3] == [b"92", b"112"]
    return rest


def test_health_is_served(server):
    with server.channel() as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "kubevision.v1.RecognitionService", "kubevision.v1.GalleryService"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, service


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff\xff\xff\xff\xff",  # a varint that never ends
        b"\x0a\xff\xff\xff\xff\x0f",  # a field claiming 4 GiB of frames
        bytes(range(256)) * 40,  # garbage
    ],
)
def test_malformed_protobuf_is_refused_and_the_server_stays_up(pb, server, payload):
    with server.channel() as channel:
        raw_identify = channel.unary_unary(
            "/kubevision.v1.RecognitionService/Identify",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        with pytest.raises(grpc.RpcError) as refused:
            raw_identify(payload, timeout=5)
        # gRPC's convention for an unparseable message (grpc-go, grpc-java, tonic alike).
        assert refused.value.code() == grpc.StatusCode.INTERNAL, refused.value
        assert "decode" in refused.value.details()
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
    assert server.process.poll() is None


def test_hostile_fields_get_the_documented_codes(pb, server, orl):
    frame = pb["frames_pb2"].Frame
    with server.channel() as channel:
        recognition = pb["recognition_pb2_grpc"].RecognitionServiceStub(channel)
        gallery = pb["gallery_pb2_grpc"].GalleryServiceStub(channel)
        cases = [
            (recognition.Identify, pb["recognition_pb2"].IdentifyRequest(), grpc.StatusCode.INVALID_ARGUMENT),
            (recognition.Identify, pb["recognition_pb2"].IdentifyRequest(frames=[frame(face_crop_image=b"")]), grpc.StatusCode.INVALID_ARGUMENT),
            (recognition.Identify, pb["recognition_pb2"].IdentifyRequest(frames=[frame(camera_image=b"\x00" * 1000)]), grpc.StatusCode.INVALID_ARGUMENT),
            (recognition.Identify, pb["recognition_pb2"].IdentifyRequest(frames=[frame(face_crop_image=orl(1, 1))], max_candidates=4_000_000_000), grpc.StatusCode.INVALID_ARGUMENT),
            (recognition.Verify, pb["recognition_pb2"].VerifyRequest(operator_id="ghost", frames=[frame(face_crop_image=orl(1, 1))]), grpc.StatusCode.NOT_FOUND),
            (gallery.Enroll, pb["gallery_pb2"].EnrollRequest(operator_id="x" * 5000, frames=[frame(face_crop_image=orl(1, 1))]), grpc.StatusCode.INVALID_ARGUMENT),
            (gallery.RemoveOperator, pb["gallery_pb2"].RemoveOperatorRequest(operator_id="ghost"), grpc.StatusCode.NOT_FOUND),
            (gallery.UpdateOperator, pb["gallery_pb2"].UpdateOperatorRequest(operator_id="ghost", frames=[frame(face_crop_image=orl(1, 1))]), grpc.StatusCode.NOT_FOUND),
        ]
        for call, request, code in cases:
            with pytest.raises(grpc.RpcError) as refused:
                call(request, timeout=5)
            assert refused.value.code() == code, (request, refused.value)
            assert refused.value.details(), "every refusal says why"
        # A message over the size limit (16 MiB by default) never reaches a handler.
        with pytest.raises(grpc.RpcError) as refused:
            recognition.Identify(pb["recognition_pb2"].IdentifyRequest(frames=[frame(camera_image=b"\x00" * (17 << 20))]), timeout=10)
        assert refused.value.code() in (grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.RESOURCE_EXHAUSTED), refused.value
    assert server.process.poll() is None
