"""The dlib recogniser through the independent Python client: a service run
with --recogniser dlib enrolls ORL people from camera images, identifies
them from camera images and from its own dlib templates, refuses an lbph
probe template and an enrollment without a dlib template, and syncs
templates of both kinds."""

import struct
import zlib

import grpc
import pytest

PERSONS = (1, 2, 3)


def parse_pgm(data):
    """Width, height and pixels of a binary PGM (the ORL photos)."""
    fields, pos = [], 0
    while len(fields) < 4:
        while data[pos : pos + 1].isspace():
            pos += 1
        if data[pos : pos + 1] == b"#":
            pos = data.index(b"\n", pos)
            continue
        end = pos
        while not data[end : end + 1].isspace():
            end += 1
        fields.append(data[pos:end])
        pos = end
    assert fields[0] == b"P5" and int(fields[3]) == 255, fields
    width, height = int(fields[1]), int(fields[2])
    return width, height, data[pos + 1 : pos + 1 + width * height]


def camera_frame(photo):
    """The photo scaled 3× (bilinear) at the centre of a mid-grey 640 × 480
    frame, PNG-encoded: a kiosk camera image, as vision's orl::sign_in_frame."""
    w, h, px = parse_pgm(photo)
    bw, bh = w * 3, h * 3
    ox, oy = (640 - bw) // 2, (480 - bh) // 2
    rows = [bytearray([128] * 640) for _ in range(480)]
    for y in range(bh):
        sy = min(max((y + 0.5) / 3 - 0.5, 0), h - 1)
        y0 = int(sy)
        y1, fy = min(y0 + 1, h - 1), sy - y0
        row0, row1 = y0 * w, y1 * w
        out = rows[oy + y]
        for x in range(bw):
            sx = min(max((x + 0.5) / 3 - 0.5, 0), w - 1)
            x0 = int(sx)
            x1, fx = min(x0 + 1, w - 1), sx - x0
            top = px[row0 + x0] * (1 - fx) + px[row0 + x1] * fx
            bottom = px[row1 + x0] * (1 - fx) + px[row1 + x1] * fx
            out[ox + x] = int(top * (1 - fy) + bottom * fy + 0.5)
    raw = b"".join(b"\x00" + bytes(r) for r in rows)

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 640, 480, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def test_dlib_enroll_identify_refuse_and_sync(pb, dlib_server, orl):
    frame = pb["frames_pb2"].Frame
    identify_request = pb["recognition_pb2"].IdentifyRequest
    with dlib_server.channel() as channel:
        gallery = pb["gallery_pb2_grpc"].GalleryServiceStub(channel)
        recognition = pb["recognition_pb2_grpc"].RecognitionServiceStub(channel)
        for person in PERSONS:
            frames = [frame(camera_image=camera_frame(orl(person, photo))) for photo in (1, 2, 3)]
            change = gallery.Enroll(pb["gallery_pb2"].EnrollRequest(operator_id=f"P{person:03}", frames=frames), timeout=60)
            assert change.template_count == 6, "one lbph and one dlib template a frame"

        status = gallery.GetGalleryStatus(pb["gallery_pb2"].GetGalleryStatusRequest(), timeout=5)
        assert (status.template_format.recogniser, status.template_format.recogniser_version) == ("dlib", 1)
        assert status.default_threshold == pytest.approx(0.48)
        assert (status.operator_count, status.template_count) == (3, 18)

        for person in PERSONS:
            burst = [frame(camera_image=camera_frame(orl(person, photo))) for photo in (8, 9, 10)]
            answer = recognition.Identify(identify_request(frames=burst), timeout=60)
            assert answer.identified and answer.operator_id == f"P{person:03}", answer

        templates = {}
        for event in gallery.SyncGallery(pb["gallery_pb2"].SyncGalleryRequest(since_version=0), timeout=30):
            if event.WhichOneof("event") == "header":
                assert event.header.template_format.recogniser == "dlib"
            if event.WhichOneof("event") == "upsert":
                templates[event.upsert.operator_id] = list(event.upsert.templates)
        assert sorted(templates) == ["P001", "P002", "P003"]
        for kept in templates.values():
            magics = sorted(t[:4] for t in kept)
            assert magics == [b"KVE1"] * 3 + [b"KVT1"] * 3, magics

        dlib_of = {who: next(t for t in kept if t[:4] == b"KVE1") for who, kept in templates.items()}
        lbph_of = {who: next(t for t in kept if t[:4] == b"KVT1") for who, kept in templates.items()}

        # The service's own dlib template of P002 as the probe.
        answer = recognition.Identify(identify_request(frames=[frame(template=dlib_of["P002"])], min_usable_frames=1), timeout=10)
        assert (answer.identified, answer.operator_id, answer.distance) == (True, "P002", 0.0)

        # An lbph template as the probe: INVALID_ARGUMENT naming both recognisers.
        with pytest.raises(grpc.RpcError) as refused:
            recognition.Identify(identify_request(frames=[frame(template=lbph_of["P002"])], min_usable_frames=1), timeout=10)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "lbph" in refused.value.details() and "dlib" in refused.value.details(), refused.value.details()

        # An enrollment of lbph templates only has nothing for a dlib gallery to match.
        with pytest.raises(grpc.RpcError) as refused:
            gallery.Enroll(pb["gallery_pb2"].EnrollRequest(operator_id="P900", templates=[lbph_of["P001"]]), timeout=10)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "dlib" in refused.value.details(), refused.value.details()

        # Face crops cannot be aligned by dlib.
        with pytest.raises(grpc.RpcError) as refused:
            recognition.Identify(identify_request(frames=[frame(face_crop_image=orl(1, 9))]), timeout=10)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "needs whole camera images or templates" in refused.value.details()
