"""The pluggy markers, made once."""

import pluggy

hookspec = pluggy.HookspecMarker("switchboard")
hookimpl = pluggy.HookimplMarker("switchboard")
