import os
import subprocess
import sys
import time

import pytest

from plugins.manager import load_registry
from plugins.sources.spec import InboundRequest
from tests.receivers import Receiver

# A secret as the platform could generate before it stopped drawing them with "-" first,
# or as a provider or a person may choose one.
DASHED = "-Kq3vZ1xB7mN0pLr5tYw2uHs8dFg4jAe6cVb9nM1kQ"


def send_sample(*secret_args: str, edge: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    return subprocess.run([sys.executable, "-m", "switchboard.cli", "send-sample", "intercom", "--source", "src_1",
                           *secret_args, "--edge", edge], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("secret_args", [("--secret", DASHED), (f"--secret={DASHED}",)], ids=["spaced", "joined"])
def test_send_sample_takes_a_secret_that_starts_with_a_dash(secret_args: tuple[str, ...]) -> None:
    with Receiver(status=202, response_body=b'{"event_id": "evt_1"}') as edge:
        base = edge.url.removesuffix("/hook")
        done = send_sample(*secret_args, edge=base)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("202 ")
        [request] = edge.requests
    assert request.path == "/in/src_1"
    # Signed with exactly that secret: the intercom source verifies it.
    source = load_registry().source("intercom")
    inbound = InboundRequest("POST", request.path, request.headers, request.body, received_at=time.time(),
                             url=base + request.path)
    source.verify(inbound, DASHED, source.validate_config({}))


def test_receive_takes_a_secret_that_starts_with_a_dash() -> None:
    from switchboard.cli.main import parse_args

    args = parse_args(["receive", "--secret", "-abc", "--port", "9001"])
    assert (args.secret, args.port) == ("-abc", 9001)
    assert parse_args(["receive", "--secret=--abc"]).secret == "--abc"
    with pytest.raises(SystemExit):  # a missing value is still an error
        parse_args(["receive", "--secret"])


def test_up_takes_an_odd_cluster_size_and_refuses_it_beside_an_external_nats(capsys) -> None:
    from switchboard.cli.main import parse_args
    from switchboard.settings import Settings

    assert parse_args(["up", "--cluster", "3"]).cluster == 3
    assert parse_args(["up"]).cluster is None
    with pytest.raises(SystemExit):
        parse_args(["up", "--cluster", "2"])
    assert "odd number of nodes" in capsys.readouterr().err
    args = parse_args(["up", "--cluster", "3"])
    assert args.func(args, Settings(nats_url="nats://nats:4222")) == 2
    assert "unset SWITCHBOARD_NATS_URL" in capsys.readouterr().err


async def test_the_listen_commands_sse_reader_takes_frames_as_the_spec_writes_them() -> None:
    from switchboard.cli.listen import sse_events

    async def lines(*given: str):
        for line in given:
            yield line

    frames = [frame async for frame in sse_events(lines(
        "retry: 2000", ": listening", "",  # a comment and a field it ignores
        "id: evt_1", "event: event", 'data: {"a":', "data: 1}", "",  # data over two lines
        "data:no space", "",  # the default event name; the space after the colon is optional
        "event: dropped", "", "event: event", "data: last"))]  # no data: nothing; no blank line: not ended
    assert frames == [("event", '{"a":\n1}'), ("message", "no space")]
