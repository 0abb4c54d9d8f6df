"""RFC 3261 §25.1 rules as compiled regular expressions, each next to the rule it encodes
(h11's _abnf.py). The parser validates a whole header field with one `fullmatch`, in C,
instead of walking it character by character in Python.

Values are matched after unfolding (`Header.value`), so LWS is plain SP / HTAB here.
"""

from __future__ import annotations

import re

# LWS = [*WSP CRLF] 1*WSP ; SWS = [LWS]  (folds are already replaced by one SP)
LWS = r"[ \t]+"
SWS = r"[ \t]*"

# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"

# word = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" / "(" / ")"
#        / "<" / ">" / ":" / "\" / DQUOTE / "/" / "[" / "]" / "?" / "{" / "}")
WORD = r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+"

# quoted-string = SWS DQUOTE *(qdtext / quoted-pair) DQUOTE
# qdtext = LWS / %x21 / %x23-5B / %x5D-7E / UTF8-NONASCII
# quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
QUOTED_STRING = r'"(?:[ \t\x21\x23-\x5b\x5d-\x7e\x80-\U0010ffff]|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*"'

# host = hostname / IPv4address / IPv6reference   (IPv6 per RFC 5118 §4.10: tolerant)
HOST = r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9\-.]*[A-Za-z0-9.])?)"
PORT = r"[0-9]{1,5}"
HOSTPORT = rf"{HOST}(?::{PORT})?"

# gen-value = token / host / quoted-string ; generic-param = token [ EQUAL gen-value ]
GEN_VALUE = rf"(?:{TOKEN}|{HOST}|{QUOTED_STRING}|[A-Za-z0-9\-.!%*_+`'~:\[\]]+)"
GENERIC_PARAM = rf"{TOKEN}(?:{SWS}={SWS}{GEN_VALUE})?"
PARAMS = rf"(?:{SWS};{SWS}{GENERIC_PARAM})*"

# via-parm = sent-protocol LWS sent-by *( SEMI via-params )
# sent-protocol = protocol-name SLASH protocol-version SLASH transport
VIA_PARM = rf"{TOKEN}{SWS}/{SWS}{TOKEN}{SWS}/{SWS}{TOKEN}{LWS}{HOSTPORT}{PARAMS}"
VIA = re.compile(rf"{VIA_PARM}(?:{SWS},{SWS}{VIA_PARM})*")

# SIP-URI = "sip:" [ userinfo ] hostport uri-parameters [ headers ]  (§19.1.1; userinfo may
# hold most printable characters, escaped or not, so it is matched loosely up to the '@')
# absoluteURI for the other schemes (§25.1), matched as "scheme:" and no separators.
SCHEME = r"[A-Za-z][A-Za-z0-9+\-.]*"
URI_CHARS = r"[^\s<>\"]+"
ADDR_SPEC = rf"{SCHEME}:{URI_CHARS}"
# addr-spec without '<>' cannot contain ',', ';' or '?' (they would be header params, §20.10)
BARE_ADDR_SPEC = rf"{SCHEME}:[^\s<>\",;?]+"

# display-name = *(token LWS) / quoted-string   (unquoted words may carry UTF-8, see grammar)
UNQUOTED_WORD = r"[A-Za-z0-9\-.!%*_+`'~\x80-\U0010ffff]+"
DISPLAY_NAME = rf"(?:{QUOTED_STRING}|{UNQUOTED_WORD}(?:{LWS}{UNQUOTED_WORD})*)"

# name-addr = [ display-name ] LAQUOT addr-spec RAQUOT ; (from-spec / to-spec / contact-param)
NAME_ADDR_PARM = rf"(?:(?:{DISPLAY_NAME}{SWS})?<{ADDR_SPEC}>|{BARE_ADDR_SPEC}){PARAMS}"
NAME_ADDR = re.compile(
    rf"(?:(?:{DISPLAY_NAME}{SWS})?<(?P<uri>{ADDR_SPEC})>|(?P<bare>{BARE_ADDR_SPEC})){PARAMS}"
)
NAME_ADDR_LIST = re.compile(rf"{NAME_ADDR_PARM}(?:{SWS},{SWS}{NAME_ADDR_PARM})*")

# callid = word [ "@" word ]
CALL_ID = re.compile(rf"{WORD}(?:@{WORD})?")

# CSeq = "CSeq" HCOLON 1*DIGIT LWS Method
CSEQ = re.compile(rf"(?P<num>[0-9]+){LWS}(?P<method>{TOKEN})")
