"""Build the English "varied" PII set (`pipelines/pii/data/en_varied.jsonl`) from public raw data.

Source: the ``presidio-evaluator`` wheel (MIT, microsoft/presidio-research), which ships the
sentence templates presidio's own synthetic benchmark is generated from and a table of 3,000
FakeNameGenerator.com identities of 24 name sets (Hungarian, Japanese, Chechen, Icelandic, ...),
with phone numbers in their countries' national formats. This script fills those templates with
those identities by its own rules (no code of the evaluator is used), labels every inserted value
with its span, and splits by template and by identity so that nothing of the ``test`` half (its
templates and its people) was seen while tuning on the ``tune`` half:

    pip download --no-deps presidio-evaluator==0.3.2 -d /tmp/pe
    python benchmarks/make_en_pii_set.py /tmp/pe/presidio_evaluator-0.3.2-py3-none-any.whl

``--seed`` (default 18, the committed set) draws other identities and values for the same
templates and splits, e.g. a fresh holdout no one has read: ``--seed 2027 --out /tmp/fresh.jsonl``
then ``python -m pipelines.pii.evaluate --varied /tmp/fresh.jsonl``.

Phones are the identity's own national number (no country code) or a Faker number of one of
twelve locales (national formats); 5% of sentences are lower-cased, as in presidio's generator.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import re
import zipfile
from pathlib import Path

from faker import Faker

OUT = Path(__file__).resolve().parents[1] / "pipelines/pii/data/en_varied.jsonl"
RAW = "presidio_evaluator/data_generator/raw_data/"
PHONE_LOCALES = (
    "en_US", "en_GB", "fr_FR", "de_DE", "nl_BE", "pt_BR", "es_ES", "it_IT", "en_AU", "en_CA", "nl_NL", "sv_SE",
)  # fmt: skip
# template placeholder -> (label, how to fill); labels follow presidio's names, mapped to ours in
# `pipelines.pii.evaluate` (PERSON, PHONE, EMAIL, CREDIT_CARD, IBAN, IP_ADDRESS; GPE -> LOCATION)
PERSON_SLOTS = {
    "person", "name", "name_male", "name_female", "first_name", "first_name_male", "first_name_female",
    "first_name_nonbinary", "last_name", "last_name_male", "last_name_female",
}  # fmt: skip
GPE_SLOTS = {"city", "country", "state_abbr"}


def fill(slot: str, who: dict[str, str], fk: Faker, r: random.Random) -> tuple[str | None, str]:
    """(label or None, value) for one placeholder."""
    if slot in ("person", "name", "name_male", "name_female"):
        middle = f" {who['MiddleInitial']}." if r.random() < 0.2 and who["MiddleInitial"] else ""
        return "PERSON", f"{who['GivenName']}{middle} {who['Surname']}"
    if slot.startswith("first_name"):
        return "PERSON", who["GivenName"]
    if slot.startswith("last_name"):
        return "PERSON", who["Surname"]
    if slot.startswith("prefix"):
        return "TITLE", who["Title"]
    if slot == "phone_number":
        if r.random() < 0.5:
            return "PHONE", who["TelephoneNumber"]
        f = Faker(r.choice(PHONE_LOCALES))
        f.seed_instance(r.random())
        return "PHONE", f.phone_number()
    if slot == "email":
        return "EMAIL", who["EmailAddress"]
    if slot == "credit_card_number":
        return "CREDIT_CARD", fk.credit_card_number()
    if slot == "iban":
        return "IBAN", fk.iban()
    if slot == "ip_address":
        return "IP_ADDRESS", fk.ipv4_public() if r.random() < 0.8 else fk.ipv6()
    if slot == "address":
        return "STREET_ADDRESS", f"{who['StreetAddress']}, {who['City']}, {who['ZipCode']}, {who['CountryFull']}"
    if slot == "city":
        return "GPE", who["City"]
    if slot == "country":
        return "GPE", who["CountryFull"]
    if slot == "state_abbr":
        return "GPE", who["State"] or fk.state_abbr()
    if slot == "organization":
        return "ORGANIZATION", who["Company"]
    if slot in ("street_name", "building_number", "secondary_address", "postcode", "zipcode"):
        makers = {"street_name": fk.street_name, "building_number": fk.building_number, "postcode": fk.postcode,
                  "secondary_address": fk.secondary_address, "zipcode": fk.zipcode}  # fmt: skip
        return "STREET_ADDRESS", makers[slot]()
    if slot in ("date_of_birth", "date_time", "year", "day_of_week"):
        return "DATE_TIME", {"date_of_birth": who["Birthday"], "date_time": fk.date_time().isoformat(" "),
                             "year": str(fk.year()), "day_of_week": fk.day_of_week()}[slot]  # fmt: skip
    if slot == "age":
        return "AGE", who["Age"]
    if slot == "job":
        return "TITLE", who["Occupation"]
    if slot in ("nationality", "nation_woman", "nation_man", "nation_plural"):
        return "NRP", r.choice(["Hungarian", "Japanese", "Brazilian", "Danish", "Italian", "Finnish"])
    if slot == "url":
        return "URL", fk.url()
    if slot == "ssn":
        return "US_SSN", fk.ssn()
    if slot == "us_driver_license":
        return "US_DRIVER_LICENSE", fk.bothify("?#######").upper()
    return None, fk.word()


def sentence(template: str, who: dict[str, str], fk: Faker, r: random.Random) -> dict:
    text, spans, pos = [], [], 0
    for part in re.split(r"(\{\{[a-z_]+\}\})", template):
        if part.startswith("{{"):
            label, value = fill(part[2:-2], who, fk, r)
            if label:
                spans.append({"entity_type": label, "start": pos, "end": pos + len(value)})
            text.append(value)
        else:
            value = part
            text.append(value)
        pos += len(value)
    full = "".join(text)
    if r.random() < 0.05:
        full = full.lower()
    return {"text": full, "spans": spans}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("wheel", type=Path, help="presidio_evaluator-*.whl")
    p.add_argument("--per-template", type=int, default=10, help="sentences per template (holdout: twice)")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--seed", type=int, default=18, help="18: the committed set; another: fresh values")
    args = p.parse_args()
    with zipfile.ZipFile(args.wheel) as z:
        lines = z.read(RAW + "templates.txt").decode("utf-8").splitlines()
        templates = [t.strip().replace("\\n", "\n") for t in lines if t.strip()]  # "\n" written out in the file
        people = list(csv.DictReader(io.StringIO(z.read(RAW + "FakeNameGenerator.com_3000.csv").decode("utf-8-sig"))))
    r = random.Random(args.seed)
    fk = Faker("en_US")
    fk.seed_instance(args.seed)
    n = len(people)
    parts = {"tune": people[: n // 2], "dev": people[n // 2 : 3 * n // 4], "holdout": people[3 * n // 4 :]}
    rows = []
    for t_id, template in enumerate(templates):
        split = {1: "dev", 3: "holdout"}.get(t_id % 5, "tune")
        for _ in range(args.per_template * (2 if split == "holdout" else 1)):
            row = sentence(template, r.choice(parts[split]), fk, r)
            rows.append({"split": split, "template": t_id, **row})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{len(rows)} sentences -> {args.out}")


if __name__ == "__main__":
    main()
