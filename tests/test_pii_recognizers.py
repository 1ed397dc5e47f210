"""Each structured recognizer: positives, near-misses, and CJK adjacency (no \\b tricks)."""

from __future__ import annotations

import pytest

from pipelines.pii.recognizers import find_structured, resolve_overlaps, scan_texts
from pipelines.pii.scan import scan_structured
from pipelines.pii.validators import luhn_ok, prc_id_ok


def found(text: str) -> list[tuple[str, str]]:
    return [(f.entity, text[f.start : f.end]) for f in find_structured(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("邮箱a@b.com。", [("EMAIL", "a@b.com")]),
        ("mail john.doe+tag@mail.example.co.uk, thanks", [("EMAIL", "john.doe+tag@mail.example.co.uk")]),
        ("请发邮件至zhang.wei@163.com联系", [("EMAIL", "zhang.wei@163.com")]),
        ("user@localhost and a@b.notatld", []),  # no public suffix
    ],
)
def test_email(text: str, expected: list) -> None:
    assert found(text) == expected


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("电话13812345678", "13812345678"),
        ("联系电话：+86 138-1234-5678。", "+86 138-1234-5678"),
        ("手机(+86)139 1234 5678", "(+86)139 1234 5678"),
        ("tel 008613812345678.", "008613812345678"),
        ("call (415) 555-2671 today", "(415) 555-2671"),
        ("call 415.555.2671x123.", "415.555.2671x123"),
        ("+1-780-563-6083x7783", "+1-780-563-6083x7783"),
        ("001-792-541-1578", "001-792-541-1578"),
        ("London +44 20 7946 0958.", "+44 20 7946 0958"),
        ("总机010-62345678转", "010-62345678"),
        ("Spain 48368 | Fax\\,320491653-Fax", "320491653"),  # a vCard-escaped list: comma after a letter
    ],
)
def test_phone_positives(text: str, value: str) -> None:
    assert found(text) == [("PHONE", value)]


@pytest.mark.parametrize(
    "text",
    [
        "订单号13812345678",  # order number shaped like a mobile
        "Order number 13812345678 shipped",
        "tracking #4155552671",
        "流水号2023111513812345678",  # longer digit run: no mobile inside
        "SKU A13812345678",  # glued to letters
        "10012345678",  # 10x is not a mobile prefix (nor a NANP number)
        "on 2019-04-15 at 10:30",
        "a fee of 1,250,000 paid, 25,000 of it by fax",  # thousands groups, a phone cue nearby
    ],
)
def test_phone_near_misses(text: str) -> None:
    assert [e for e, _ in found(text)] == []


def test_prc_id_checksum_and_adjacency() -> None:
    assert prc_id_ok("11010519491231002X")
    assert found("身份证号码11010519491231002X，") == [("PRC_ID", "11010519491231002X")]
    assert found("身份证号码110105194912310021") == []  # wrong check digit
    assert found("号码110105194913310025") == []  # month 13
    assert found("x11010519491231002X9") == []  # part of a longer number


def test_cards_luhn() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert found("卡号4111111111111111。") == [("CREDIT_CARD", "4111111111111111")]
    assert found("card 4111-1111-1111-1111 exp 12/29") == [("CREDIT_CARD", "4111-1111-1111-1111")]
    # a trailing group is trimmed back, not swallowed
    assert found("card 4111 1111 1111 1111 2024") == [("CREDIT_CARD", "4111 1111 1111 1111")]
    assert found("card 4111111111111112") == []  # Luhn fails
    assert found("card 4111 1111-1111 1111") == []  # mixed separators
    assert found("身份证445321194404177487") == []  # an id with a bad check digit, even if Luhn-valid


def test_iban() -> None:
    assert found("IBAN GB82WEST12345698765432 DE89370400440532013000") == [
        ("IBAN", "GB82WEST12345698765432"),
        ("IBAN", "DE89370400440532013000"),
    ]
    assert found("IBAN GB82 WEST 1234 5698 7654 32.") == [("IBAN", "GB82 WEST 1234 5698 7654 32")]
    assert found("my iban is gb82west12345698765432") == [("IBAN", "gb82west12345698765432")]
    assert found("digest de89370400440532013000ab") == []  # lower case: the exact length only
    assert found("GB82WEST12345698765433") == []  # mod 97 fails


def test_ip_public_only() -> None:
    text = "from 8.8.8.8, 10.0.0.1, 192.168.1.1, 127.0.0.1, 203.0.113.5 and 2001:4860:4860::8888 fe80::1"
    assert found(text) == [("IP_ADDRESS", "8.8.8.8"), ("IP_ADDRESS", "2001:4860:4860::8888")]
    assert found("服务器IP8.8.4.4，端口") == [("IP_ADDRESS", "8.8.4.4")]
    assert found("version 1.2.3 at 12:30:45, MAC 00:1A:2B:3C:4D:5E") == []


def test_url_credentials_and_secrets() -> None:
    t = "连接postgres://admin:s3cr3t@db.internal:5432/prod 即可"
    assert found(t) == [("URL_CREDENTIALS", "postgres://admin:s3cr3t@db.internal:5432")]
    t = "AWS key AKIAIOSFODNN7EXAMPLE; Authorization: Bearer abcdefghijklmnop.qrstuvwx"
    assert found(t) == [("SECRET", "AKIAIOSFODNN7EXAMPLE"), ("SECRET", "abcdefghijklmnop.qrstuvwx")]
    key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----"
    assert found(f"key:\n{key}\n") == [("SECRET", key)]
    assert found("密码：Tr0ub4dor&3。") == [("SECRET", "Tr0ub4dor&3")]
    assert found("password: ********") == []
    names = {f.recognizer for f in find_structured("ghp_" + "a" * 36 + " LTAI5tAbCdEfGhIjKlMn")}
    assert names == {"github_token", "alibaba_access_key"}


def test_shard_scan_offsets_match_per_document() -> None:
    texts = ["电话13812345678", "", "no pii here", "a@b.com then 8.8.8.8", "-----BEGIN PRIVATE KEY-----\nabc"]
    per_doc = [find_structured(t) for t in texts]
    joined = [resolve_overlaps(fs) for fs in scan_texts(texts)]
    assert joined == per_doc
    # an unterminated key block never reaches into the next document
    assert scan_structured(["-----BEGIN PRIVATE KEY-----\nabc", "x\n-----END PRIVATE KEY-----"]) == [[], []]
    assert scan_structured(["电话13812345678"]) == [[("PHONE", 2, 13)]]
