"""The ``streams`` report: what a person and a script learn per connection."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fcgiforensics.testing import Conversation, write_pcap

DATA = bytes(range(256)) * 20


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fcgiforensics", "streams", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _conflicting_capture(path: Path) -> tuple[int, int]:
    """A response with one retransmission whose bytes differ; returns the
    frame numbers of the first copy and of the differing one."""
    conv = Conversation(
        client="192.0.2.10", client_port=51000, server="192.0.2.1", server_port=80
    )
    conv.handshake()
    conv.send_to_server(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    sent = conv.send_to_client(DATA)
    forged = bytearray(DATA[1448 : 2 * 1448])
    forged[10:14] = b"EVIL"
    retrans = conv.raw(False, 1448, bytes(forged))
    conv.ack_to_client()
    conv.close()
    frames = conv.frames()
    write_pcap(str(path), frames)
    data = [f.data for f in frames]
    return data.index(sent[1].data) + 1, data.index(retrans.data) + 1


def test_json_lists_each_conflicting_copy_with_its_frames(tmp_path: Path) -> None:
    """``streams --json`` gives each conflicting retransmission's offset,
    both copies' frames and bytes, and which copy the receiver kept."""
    first, second = _conflicting_capture(tmp_path / "c.pcap")
    proc = _run("--json", str(tmp_path / "c.pcap"))
    assert proc.returncode == 0, proc.stderr
    [conn] = json.loads(proc.stdout)["captures"][0]["connections"]
    half = conn["to_client"]
    assert half["conflicts"] == 1
    [copy] = half["conflicting_copies"]
    assert copy["offset"] == 1448 + 10 and copy["length"] == 4
    assert copy["first_frames"] == [first] and copy["second_frame"] == second
    assert bytes.fromhex(copy["second_hex"]) == b"EVIL"
    assert bytes.fromhex(copy["first_hex"]) == DATA[1458:1462]
    assert copy["receiver_kept"] == "first"


def test_text_table_shows_when_each_connection_ran(tmp_path: Path) -> None:
    """The text table gives each connection's start time and duration."""
    _conflicting_capture(tmp_path / "c.pcap")
    proc = _run(str(tmp_path / "c.pcap"))
    assert proc.returncode == 0, proc.stderr
    header, row = proc.stdout.splitlines()[1:3]
    assert "start (UTC)" in header and "seconds" in header
    start = json.loads(_run("--json", str(tmp_path / "c.pcap")).stdout)["captures"][0][
        "connections"
    ][0]["start"]
    assert start[11:26] in row
