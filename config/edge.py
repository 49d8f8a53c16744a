"""The WebSocket edge under daphne: refuse what breaks the protocol with a close code, as uvicorn does.

daphne's WebSocket library (autobahn) drops the TCP connection without a close frame when a client breaks the
protocol (a message over the size limit, invalid UTF-8 in a text frame), and daphne has no option to change
that. Clients then cannot tell a refusal (1009 too large, 1007 invalid payload) from a network loss, and would
reconnect and try again. This makes daphne's factory fail connections with the close handshake instead, and
caps its message size at PARLEY_WS_MAX_BYTES whatever its command line says (docs/security.md), and keeps
autobahn from formatting debug lines nobody writes.
"""

from django.conf import settings


def install_daphne_edge() -> None:
    try:
        from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol
    except ImportError:  # another server
        return
    if getattr(WebSocketFactory, "parley_edge", False):
        return
    set_options = WebSocketFactory.setProtocolOptions
    limit = settings.PARLEY_SIGNALING["WS_MAX_BYTES"]

    def set_protocol_options(self, **options):
        for key in ("maxMessagePayloadSize", "maxFramePayloadSize"):
            if options.get(key) is not None:
                options[key] = min(options[key] or limit, limit)  # 0 is autobahn's "unlimited"
        set_options(self, failByDrop=False, **options)

    WebSocketFactory.setProtocolOptions = set_protocol_options

    on_close = WebSocketProtocol.onClose

    def told_the_code_it_closed_with(self, was_clean, code, reason):
        # The consumer hears the code of a refusal (1007, 1009), not the 1006 of the connection that followed.
        if getattr(self, "failedByMe", False) and getattr(self, "localCloseCode", None):
            code = self.localCloseCode
        on_close(self, was_clean, code, reason)

    WebSocketProtocol.onClose = told_the_code_it_closed_with
    quiet_autobahn_debug_lines()
    WebSocketFactory.parley_edge = True


def quiet_autobahn_debug_lines() -> None:
    """autobahn builds the arguments of its debug log lines whether or not they are written: a pretty-printed
    list of its 40 options for every connection, and terminal colours (click, which uvicorn brings) of the
    arguments of a line for every frame sent. A py-spy profile of 1,000 joins on daphne put 9 % of the server's CPU
    there. Unless autobahn logs at debug level, its colouring is plain text and that list is not printed."""
    import txaio
    from autobahn import util
    from autobahn.websocket import protocol

    if txaio.get_global_log_level() in ("debug", "trace"):
        return
    util._HAS_CLICK = False
    protocol.pformat = lambda value: ""  # only its debug lines and debug reprs use it
