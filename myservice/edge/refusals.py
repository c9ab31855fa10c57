"""What the server refuses before the app sees a request, and how it says so.

- ``Parser``: waitress's request parser, which refuses a request framed by both Content-Length
  and Transfer-Encoding, and an HTTP/1.0 request with a Transfer-Encoding (request smuggling);
  never invites with 100 Continue a body it has already refused (a Content-Length over the
  limit); and keeps the clock by which ``SlowClients`` judges a slow client.
- ``ProblemTask``: the answer to everything the server refuses itself (400, 408, 413, 431, 500,
  501), an RFC 9457 problem document with an X-Request-ID, as the app's own refusals are.

``myservice.edge.server``'s channel uses both.
"""

import time
from http import HTTPStatus

from waitress.parser import HTTPRequestParser, ParsingError
from waitress.task import ErrorTask

from myservice.edge.jsonbody import too_large
from myservice.edge.problems import PROBLEM_JSON, problem_document
from myservice.edge.requestid import echoed_or_new

#: What the client is told, by status; a 413 names the limit, a 400 what is malformed.
DETAILS = {
    431: "the request line and headers are too large",
    500: "the server failed to answer this request",
    501: "the only transfer coding accepted is chunked",
}


class ProblemTask(ErrorTask):
    """waitress's answer to a request it refuses, as a problem document with an X-Request-ID."""

    def execute(self):
        code = self.request.error.code
        body = problem_document(code, self.detail(code))
        self.status = f"{code} {HTTPStatus(code).phrase}"
        request_id = echoed_or_new(self.request.headers.get("X_REQUEST_ID", ""))
        self.response_headers += [("Content-Type", PROBLEM_JSON), ("X-Request-ID", request_id)]
        self.set_close_on_finish()  # the rest of the stream cannot be trusted: close, as waitress
        self.content_length = len(body)
        self.write(body)

    def detail(self, code):
        if code == 413:  # waitress refuses a body of max_request_body_size bytes or more
            return too_large(self.channel.adj.max_request_body_size - 1)
        if code == 408:  # SlowClients says what was late
            return self.request.error.body
        if code in DETAILS:
            return DETAILS[code]
        # waitress's 400 texts are fixed phrases, some followed by the quoted bad input: keep
        # the phrase only ("Invalid header", "Invalid chunk size", "Malformed HTTP method").
        phrase = self.request.error.body.split('"')[0].strip().rstrip(".")
        return f"the request is malformed: {phrase[:1].lower()}{phrase[1:]}"


class Parser(HTTPRequestParser):
    """Never sends 100 Continue for a request already refused (e.g. a Content-Length too large),
    and refuses a request framed by both Content-Length and Transfer-Encoding.

    waitress's ``HTTPChannel.received`` sends 100 Continue whenever the headers are in and the
    client expects it, and ``send_continue`` then marks the refused request incomplete, so
    waitress would read the body up to the limit before it answers 413.

    With both headers waitress follows Transfer-Encoding and keeps the connection open, while a
    proxy in front of us that follows Content-Length would see another request boundary: the
    way requests are smuggled. RFC 9112 (section 6.1) lets a server reject such a request and
    says to close the connection after it; the 400 does both.
    """

    def __init__(self, adj):
        super().__init__(adj)
        self.restart_clock()  # a parser is made when the first bytes of its request arrive

    def received(self, data):
        had_head = self.headers_finished
        consumed = super().received(data)
        if self.error is not None:
            self.expect_continue = False
        if self.headers_finished and not had_head:
            self.restart_clock()  # the head is in: the body's time starts
        return consumed

    def restart_clock(self):
        """From now on, the time this request's client takes counts (``SlowClients``)."""
        self.waiting_since = time.monotonic()
        self.body_bytes_by_then = self.body_bytes_received

    def parse_header(self, header_plus):
        super().parse_header(header_plus)
        # HTTP/1.1's Transfer-Encoding is popped into ``chunked``; HTTP/1.0's is left as it came.
        if "CONTENT_LENGTH" in self.headers and (
            self.chunked or "TRANSFER_ENCODING" in self.headers
        ):
            raise ParsingError("both Content-Length and Transfer-Encoding")
        refuse_transfer_encoding_in_http_1_0(self)


def refuse_transfer_encoding_in_http_1_0(request):
    """HTTP/1.0 has no Transfer-Encoding, and waitress ignores one there: it would answer the
    head as a bodiless request and read what a proxy sent as its body as the next request. RFC
    9112 (section 6.1) says such framing is faulty and the connection is closed after it: the
    400 does both."""
    if request.version == "1.0" and "TRANSFER_ENCODING" in request.headers:
        raise ParsingError("a Transfer-Encoding in an HTTP/1.0 request")
