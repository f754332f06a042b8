"""The public surface is deliberate: these names, and no import costs."""

from __future__ import annotations

import fcgiforensics
import fcgiforensics.testing
from fcgiforensics import anomalies, errors, frames


def test_top_level_exports() -> None:
    """The package exports its version and the notebook entry point."""
    assert fcgiforensics.__all__ == ["__version__", "analyze"]


def test_testing_module_exports() -> None:
    """fcgiforensics.testing offers synthetic capture builders for users."""
    assert set(fcgiforensics.testing.__all__) == {
        "Frame",
        "Conversation",
        "tcp_frame",
        "pcap_bytes",
        "pcapng_bytes",
        "write_pcap",
        "write_pcapng",
        "fcgi_record",
        "fcgi_params",
        "fcgi_request",
        "fcgi_response",
        "http_request",
        "http_response",
        "two_leg_exchanges",
        "one_exchange",
    }


def test_error_hierarchy_has_one_root() -> None:
    """Every error class the package raises derives from one root."""
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.FcgiForensicsError)


def test_error_message_names_file_frame_and_offset() -> None:
    """A capture error reads 'file: frame N file offset 0x..: reason'."""
    err = errors.CaptureError(
        "client.pcap",
        "record length 70000 exceeds snaplen 65535",
        offset=0x1A2B40,
        frame=1834,
    )
    assert str(err) == (
        "client.pcap: frame 1834 file offset 0x1a2b40: "
        "record length 70000 exceeds snaplen 65535"
    )


def test_frame_ids_pack_file_and_number() -> None:
    """A frame id keeps Wireshark's number and the file of a rotated leg."""
    ref = frames.frame_ref(2, 1834)
    assert frames.frame_number(ref) == 1834 and frames.frame_file(ref) == 2
    assert frames.frame_ref(0, 7) == 7
    assert frames.format_frames([3, 7, 8, 9]) == "3, 7-9"


def test_anomaly_str_names_where_it_was_seen() -> None:
    """An anomaly prints its name, detail and location."""
    a = anomalies.Anomaly(
        "tcp.gap",
        "10 bytes not in the capture",
        capture="c.pcap",
        first_frame=12,
        connection="1.2.3.4:5 -> 6.7.8.9:80",
        stream_offset=100,
    )
    assert str(a) == (
        "tcp.gap: 10 bytes not in the capture (c.pcap, "
        "frame 12, 1.2.3.4:5 -> 6.7.8.9:80, stream offset 100)"
    )
