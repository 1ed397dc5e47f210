"""Street addresses in English (and Latin-script European) text: ADDRESS, so that a street, town
or postcode is redacted as an address rather than read as a person's name.

spaCy's small model tags street names made of first names ("691 John Glens", "Amy Loop") and
towns ("Matagami", "Latsia") as PERSON; the name lists do the same with "Antonio Vázquez 94".
An address recognizer running before the overlap resolution (its score beats NER's) types
those spans correctly. Shapes, all with a house number:

* number first, then up to five name words and a street type of USPS Publication 28 (Street,
  Avenue, Overpass, Glens, …) or a British/abbreviated one (Close, Rd, Blvd): "691 John Glens",
  "12 Baker St.";
* a street word first (Rua, Via, Calle, Rue, Avenue, ul., Trg, …) then name words and a number:
  "Rua Katumi Kida 435", "Via delle Coste 41";
* a compound street name (…straße, …vej, …laan, …katu, …veien, …gata, …braut, utca, …) then
  a number: "Favoritenstrasse 36", "Kiannonkatu 98";
* "P.O. Box 107"; a secondary unit ("Apt. 337", "Suite 838");
* any of these, or any "Name 11" street, followed by ", town, postcode" (and a country):
  "Kooli 11, Soosalu, 78119, Estonia" — the town and postcode join the address.

Case-sensitive words in cased text; in an all-lower-case text any word may be a name word.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache

from pipelines.pii.recognizers import Finding

ADDRESS_SCORE = 0.9
# USPS Publication 28, C1 street suffixes (primary names), and common abbreviations/British types
STREET_TYPES = """Alley Annex Arcade Avenue Bayou Beach Bend Bluff Bluffs Bottom Boulevard Branch Bridge Brook Brooks
Burg Burgs Bypass Camp Canyon Cape Causeway Center Centers Circle Circles Cliff Cliffs Club Common Commons Corner
Corners Course Court Courts Cove Coves Creek Crescent Crest Crossing Crossroad Crossroads Curve Dale Dam Divide
Drive Drives Estate Estates Expressway Extension Extensions Falls Ferry Field Fields Flat Flats Ford Fords Forest
Forge Forges Fork Forks Fort Freeway Garden Gardens Gateway Glen Glens Green Greens Grove Groves Harbor Harbors
Haven Heights Highway Hill Hills Hollow Inlet Island Islands Isle Junction Junctions Key Keys Knoll Knolls Lake
Lakes Landing Lane Light Lights Loaf Lock Locks Lodge Loop Mall Manor Manors Meadow Meadows Mews Mill Mills
Motorway Mount Mountain Mountains Neck Orchard Oval Overpass Park Parks Parkway Parkways Pass Passage Path Pike
Pine Pines Place Plain Plains Plaza Point Points Port Ports Prairie Radial Ramp Ranch Rapid Rapids Rest Ridge
Ridges River Road Roads Route Row Rue Run Shoal Shoals Shore Shores Skyway Spring Springs Spur Spurs Square
Squares Station Stravenue Stream Street Streets Summit Terrace Throughway Trace Track Trafficway Trail Trailer
Tunnel Turnpike Underpass Union Unions Valley Valleys Viaduct View Views Village Villages Ville Vista Walk Walks
Wall Way Ways Well Wells Close Parade Rise Wharf Quay Esplanade Broadway Embankment
St Str Ave Av Rd Blvd Dr Ln Ct Pl Sq Hwy Pkwy Cres Terr Tce Cir Ter Trl Expy Fwy""".split()
# the rest of Publication 28's suffixes, words that follow a number outside addresses too ("the
# 2019 Fall semester", "Apollo 11 Mission"): only after a capitalised street name, in cased text
NAMED_ONLY_TYPES = ("Fall", "Land", "Mission")
STREET_WORDS = """Rua Avenida Av Via Viale Vicolo Corso Piazza Piazzale Largo Calle Carrer Avinguda Paseo Plaza
Camino Carretera Rue Avenue Boulevard Bd Chemin Allée Impasse Place Quai Route Ruelle ul ulica al aleja Trg
Ulitsa Strada Stradone Travessa Praça Estrada Rodovia Alameda Rambla Passeig Cesta Náměstí""".split()
STREET_ENDINGS = (
    "straße|strasse|str|weg|gasse|platz|allee|ring|damm|ufer|steig|vej|gade|vænget|stræde|allé|laan|straat|plein"
    "|gracht|dreef|singel|kade|katu|tie|kuja|polku|väylä|veien|vegen|veg|gata|gatan|vägen|väg|braut|stræti|vegur"
    "|utca|út|tér|körút|ulica|ulice|cesta|tänav|iela|gatvė"
)
# Latin with its accents, and Greek (addresses in Cyprus and Greece: "Καμίνια Πατρών 189, ΠΥΡΓΑ, 7648")
_L = "A-Za-zÀ-ÖØ-öø-ÿĀ-ſƀ-ɏΆ-ώἀ-ῼ∆"
_UP = "A-ZÀ-ÖØ-ÞĀĂĄĆČĎĐĒĖĘĚĞĢĪĮİĶĹĻĽŁŃŅŇŌŐŒŔŘŚŞŠŢŤŪŮŰŲŹŻŽΆ-Ϋ∆"
_NUM = r"\d{1,6}[A-Za-z]?(?:[-/]\d{1,4}[A-Za-z]?)?\.?"
_POSTCODE = (
    r"(?:[A-Z]{1,2}-)?\d{3,6}(?:[- ]\d{2,4})?(?:[ \t]?[A-Z]{2}(?![A-Za-z]))?"  # 91465, 29120-320, 3607 KP, D-10115
    r"|\d{2}-\d{3}"  # 31-301 (Poland)
    r"|[A-Z]\d[A-Z][ \t]?\d[A-Z]\d"  # J0Y 2A0 (Canada)
    r"|[A-Z]{1,2}\d[A-Z\d]?[ \t]?\d[A-Z]{2}"  # GU8 6PN (UK)
)


def _words(cased: bool) -> tuple[str, str]:
    """(a name word, a connector word) of a street name."""
    name = rf"[{_UP}][{_L}'’.\-]*" if cased else rf"[{_L}][{_L}'’.\-]*"
    connector = r"(?:de|da|do|dos|das|del|della|delle|dei|di|du|des|la|le|van|von|der|den|het|y|e|und|u|na|am|an)"
    return name, connector


@cache
def _patterns(cased: bool) -> tuple[re.Pattern[str], ...]:
    name, conn = _words(cased)
    flags = "" if cased else "(?i)"
    types = "|".join(sorted(set(STREET_TYPES), key=len, reverse=True))
    words = "|".join(sorted(set(STREET_WORDS), key=len, reverse=True))
    name_seq = rf"(?:{name}|{conn})(?:[ \t]+(?:{name}|{conn})){{0,4}}"
    country = _countries()
    tail = (
        rf"(?:,[ \t]*[{_L}][{_L}'’.\-]*(?:[ \t]+[{_L}'’.\-]+){{0,4}}?"  # town
        rf"(?=,?[ \t]*(?:{_POSTCODE})(?![0-9A-Za-z])))?"
        rf"(?:,?[ \t]*(?:{_POSTCODE})(?![0-9A-Za-z]))?"
        rf"(?:,[ \t]*(?:{country})(?![{_L}]))?"
    )
    start = rf"(?<![0-9{_L}'’\-])"
    numbered_first = rf"{start}{_NUM},?[ \t]+(?:{name_seq}[ \t]+)??(?i:{types})\.?(?![{_L}])"
    if cased:  # types that are common words after a number ("2019 Fall"): a street name first
        numbered_first += rf"|{start}{_NUM},?[ \t]+{name_seq}[ \t]+(?:{'|'.join(NAMED_ONLY_TYPES)})(?![{_L}])"
    word_first = rf"{start}(?i:{words})\.?[ \t]+{name_seq}[ \t]+{_NUM}(?![0-9])"
    compound = rf"{start}(?:{name}[ \t]+){{0,2}}[{_L}]+(?i:{STREET_ENDINGS})\.?(?:[ \t]+{name})?[ \t]+{_NUM}(?![0-9])"
    # "Kooli 11", "Zumalakarregi etorbidea 51": capitalised words (one lower-case word after the first)
    any_street = rf"{start}{name}(?:[ \t]+[{_L}]+)?(?:[ \t]+(?:{name}|{conn})){{0,3}}[ \t]+{_NUM}(?![0-9])"
    town_postcode = rf",[ \t]*[{_L}][{_L}'’.\-]*(?:[ \t]+[{_L}'’.\-]+){{0,4}}?,?[ \t]*(?:{_POSTCODE})(?![0-9A-Za-z])"
    box = rf"{start}(?i:P\.?[ \t]?O\.?[ \t]?Box|Postbox|Postfach|Apartado|Caixa Postal)[ \t]*{_NUM}"
    unit = rf"{start}(?i:Apt|Apartment|Suite|Ste|Unit|Flat)\.?[ \t]*#?[ \t]*\d{{1,5}}[A-Za-z]?(?![0-9])"
    return tuple(
        re.compile(flags + p)
        for p in (
            rf"(?:{numbered_first}|{word_first}|{compound}|{box}){tail}",
            rf"{any_street}(?={town_postcode}){tail}",  # "Kooli 11, Soosalu, 78119": town + postcode required
            unit,
        )
    )


@cache
def _countries() -> str:
    from babel import Locale

    names = set(Locale("en").territories.values())
    return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))


def address_findings(text: str, lower: bool | None = None) -> list[Finding]:
    """ADDRESS findings (possibly overlapping each other; `recognizers.resolve_overlaps` keeps
    the longest) in one English/European text. Every address has a number: only the stretches
    around digits are searched."""
    cased = not (text.lower() == text if lower is None else lower)
    spans: set[tuple[int, int]] = set()
    for pattern in _patterns(cased):
        for m in _around_digits(pattern, text):
            end = m.end()
            while end > m.start() and text[end - 1] in " \t,":
                end -= 1
            spans.add((m.start(), end))
    spans |= _block_postcodes(text, spans)
    return [Finding("ADDRESS", s, e, "en_address", ADDRESS_SCORE) for s, e in sorted(spans)]


# the last line of a multi-line address: "Estonia 92984", "Hvammstangi KY 98405", "03727"
_LINE_POSTCODE = re.compile(rf"(?m)^[ \t>]*(?:[^\n\d]{{0,40}}?[ \t,])?({_POSTCODE})[ \t]*$")
_BLOCK_REACH, _BLOCK_LINE = 200, 50  # how far after an address, how long the lines in between


def _block_postcodes(text: str, spans: set[tuple[int, int]]) -> set[tuple[int, int]]:
    """Postcodes ending a short line that follows an address found above it within a few short
    lines (a multi-line address block): the street line is found, then the town, the country and
    the postcode are separate lines that no street pattern reaches."""
    if not spans:
        return set()
    ends = sorted(e for _, e in spans)
    out = set()
    for m in _LINE_POSTCODE.finditer(text, ends[0]):
        before = [e for e in ends if e <= m.start(1) and m.start(1) - e <= _BLOCK_REACH]
        if not before or any(a <= m.start(1) and m.end(1) <= b for a, b in spans):
            continue
        lines = text[before[-1] : m.start(1)].split("\n")
        if 1 < len(lines) <= 6 and all(len(line) <= _BLOCK_LINE for line in lines):
            out.add(m.span(1))
    return out


_DIGITS = re.compile(r"\d+")
_REACH_BEFORE, _REACH_AFTER = 100, 160  # how far an address extends before/after a house number


def _around_digits(pattern: re.Pattern[str], text: str) -> list[re.Match[str]]:
    """Matches of ``pattern`` that start in a window around the digits of ``text``: windows of
    nearby numbers are merged, look-behinds still see the text before a window."""
    out: list[re.Match[str]] = []
    window_end = -1
    for d in _DIGITS.finditer(text):
        start = max(d.start() - _REACH_BEFORE, window_end)
        end = min(len(text), d.end() + _REACH_AFTER)
        if start >= end:
            continue
        pos = start
        while pos < d.end() and (m := pattern.search(text, pos, end)):
            if m.start() >= d.end():
                break
            out.append(m)
            pos = max(m.end(), m.start() + 1)
        window_end = max(window_end, pos)
    return out


def en_address_findings(
    texts: Sequence[str], *, lower: Sequence[bool] | None = None, full: Sequence[str] | None = None
) -> list[list[Finding]]:
    """Per text, numbered addresses (`address_findings`) and street names without a number
    (`street_name_findings`). ``texts`` may be views in which the sentences the NER gate rejected
    are blanked; street names are then looked for in ``full[i]``, the whole text: they need no
    model, and "Turn onto Main Street." has no word the gate would send to NER. The numbered
    patterns stay on the view: over whole real texts they also read "2017. The court", "2 branch",
    "1. Run" as addresses (USPS types are common words), which the gate's view mostly hides."""
    out = []
    for i, t in enumerate(texts):
        low = lower[i] if lower is not None else None
        whole = full[i] if full is not None else t
        found = address_findings(t, low)
        if whole is not t:  # the postcode lines of a block have no word the gate would pass
            spans = {(f.start, f.end) for f in found}
            found += [Finding("ADDRESS", s, e, "en_address", ADDRESS_SCORE) for s, e in _block_postcodes(whole, spans)]
        extra = block_units(whole, found, low) + street_name_findings(whole, low) + postcode_findings(whole)
        out.append(found + extra)
    return out


# a postcode after the words that name one: "My zip code is 01669", "ZIP: 27452", "Postcode: GU8 6PN"
_POSTCODE_CUE = re.compile(
    rf"(?i:(?<![{_L}])(?:zip|zip[ \t-]?code|postal[ \t]+code|post[ \t]?code|PLZ)(?![{_L}]))"
    rf"(?:[ \t]+(?i:is|was))?[ \t]*[:#]?[ \t]*({_POSTCODE})(?![0-9A-Za-z])"
)


def postcode_findings(text: str) -> list[Finding]:
    """ADDRESS findings for a postcode named as one: a bare number is only a postcode when the
    text says so. Searched in the whole text (no model needed, and the gate sees no name there)."""
    return [Finding("ADDRESS", *m.span(1), "en_address", ADDRESS_SCORE) for m in _POSTCODE_CUE.finditer(text)]


_UNIT_LINE = re.compile(r"[ \t]*(?:,|\n[ \t>]*)")  # what separates a street from its unit


def block_units(text: str, addresses: Sequence[Finding], lower: bool | None = None) -> list[Finding]:
    """A secondary unit ("apt. 299", "Suite 411") right after a found address, on its line
    or the next: in the gate's view that line is blanked when it holds no word NER would want."""
    cased = not (text.lower() == text if lower is None else lower)
    unit = _patterns(cased)[2]
    ends = {f.end for f in addresses if f.entity == "ADDRESS"}
    starts = {f.start for f in addresses}
    out = []
    for end in sorted(ends):
        sep = _UNIT_LINE.match(text, end)
        if sep and (m := unit.match(text, sep.end())) and m.start() not in starts:
            out.append(Finding("ADDRESS", m.start(), m.end(), "en_address", ADDRESS_SCORE))
    return out


def yield_to_addresses(text: str, findings: list[Finding]) -> list[Finding]:
    """PERSON/LOCATION findings cut back to what lies outside ADDRESS findings: spaCy's
    "Katrine Knudsen Suite" next to the address "Suite 159" keeps "Katrine Knudsen", a town
    inside an address goes (the address redacts it). What is left must still hold a letter."""
    addresses = [(f.start, f.end) for f in findings if f.entity == "ADDRESS"]
    if not addresses:
        return findings
    out = []
    for f in findings:
        if f.entity not in ("PERSON", "LOCATION"):
            out.append(f)
            continue
        start, end = f.start, f.end
        for a, b in addresses:
            if a < end and start < b:
                if a <= start and end <= b:
                    start = end  # inside: dropped
                elif a > start:
                    end = a  # the address starts inside the name: keep the part before it
                else:
                    start = b  # the address ends inside the name: keep the part after it
        while start < end and not text[start].isalnum():
            start += 1
        while end > start and not text[end - 1].isalnum():
            end -= 1
        if any(c.isalpha() for c in text[start:end]):
            out.append(f._replace(start=start, end=end))
    return out


# -- street names without a house number ("at the corner of Elm St. and 3rd Ave.", "lives on Moore Road")
# A street type that names a street on its own after one to four capitalised words (or an ordinal,
# "5th Ave."); the other USPS types ("Pines", "Ford", "Park", "Court", "Square") are ordinary words
# and surnames too, so they count only right after a street context ("on", "corner of").
BARE_TYPES = "Street Avenue Road Boulevard Lane Drive Terrace Parkway Highway Expressway Freeway Turnpike".split()
BARE_ABBREVIATIONS = "St Ave Av Rd Blvd Ln Dr Ter Terr Tce Pkwy Hwy Expy Fwy".split()  # with or without "."
_BARE_LOWER = "street|road|avenue|lane|boulevard|drive"  # "lives on Moore Road street" (cased text)
# a street context just before the name: raises the score; the weak types need one of the first kind
_STREET_CONTEXT = re.compile(
    r"(?i:(?:corner|intersection|junction|crossing) of|(?:on|at) the corner of|lives? on|lived on|living on"
    r"|located on|situated on|on|onto|off|along|down|up|via|between)[ \t]+(?:the[ \t]+)?$"
)
_NEAR_CONTEXT = re.compile(r"(?i:at|near|from|to|and|in|into|cross|past|by)[ \t]+(?:the[ \t]+)?$")
BARE_SCORE, BARE_CONTEXT_SCORE = 0.7, ADDRESS_SCORE
_SURNAME_TYPES = frozenset([*BARE_TYPES, "Court", "Way", "Place", "Ford", "Hill", "Park"])  # also surnames
# well-known non-addresses: a market, a show, a government, a galaxy, a song, a storage service
NOT_STREETS = frozenset(
    """wall street|sesame street|downing street|fleet street|easy street|milky way|abbey road|penny lane
    |memory lane|lovers lane|lover's lane|google drive|test drive|hard drive|flash drive|disk drive|silk road
    |yellow brick road|information superhighway|one way|no way""".replace("\n", "").split("|")
)
# USPS types that after "on" name an organisation or a building far more often than a street
# ("the Treaty on European Union", "on Penn Station"): with a house number only
NOT_WEAK_TYPES = frozenset("Union Unions Club Center Centers Station Mall Lodge Camp Fort Port Ports".split())
NUMBERED_ROAD = re.compile(
    r"(?<![A-Za-z])(?:Route|Highway|Hwy\.?|Interstate|State Route|County Road|US Route|U\.S\. Route)[ \t]+"
    r"\d{1,4}[A-Z]?(?![0-9A-Za-z])"
)


@cache
def _bare_regexes() -> tuple[re.Pattern[str], re.Pattern[str]]:
    strong = "|".join(sorted(BARE_TYPES, key=len, reverse=True))
    abbreviated = "|".join(sorted(BARE_ABBREVIATIONS, key=len, reverse=True))
    weak_types = set(STREET_TYPES) - set(BARE_TYPES) - set(BARE_ABBREVIATIONS) - NOT_WEAK_TYPES
    weak = "|".join(sorted(weak_types, key=len, reverse=True))
    suffix = re.compile(
        # the first class skips, cheaply, every position where no type can start
        rf"(?=[A-Z{''.join(sorted({w[0] for w in _BARE_LOWER.split('|')}))}])(?<![{_L}'’\-])"
        rf"(?:(?P<strong>{strong}|(?:{abbreviated})(?P<dot>\.)?)|(?P<lower>{_BARE_LOWER})"
        rf"|(?P<weak>{weak}))(?![{_L}'’\-])"
    )
    word = rf"(?:[A-Z][{_L}'’\-]*|\d{{1,3}}(?:st|nd|rd|th))"
    name = re.compile(rf"(?<![{_L}0-9'’\-.])((?:{word}[ \t]+){{1,4}})$")
    return suffix, name


@cache
def _function_words() -> frozenset[str]:
    from pipelines.pii.engine import import_spacy

    import_spacy()
    from spacy.lang.en.stop_words import STOP_WORDS

    return frozenset(STOP_WORDS)


def street_name_findings(text: str, lower: bool | None = None) -> list[Finding]:
    """ADDRESS findings for street names without a house number in cased English text: one to four
    capitalised words (or an ordinal) and a street type ("Elm St.", "5th Ave.", "Moore Road street"),
    numbered roads ("Route 66"). Not a street: a known non-address ("Wall Street", "Milky Way"), a
    name that goes on into a longer proper name ("Wall Street Journal", "Charleston Road Registry"),
    "St."/"Dr." before a name (a saint, a doctor), a given name + a surname that is also a street type
    without street context ("Sandra Lane": a person). Lower-case texts: none (any word may be a name)."""
    if (text.lower() == text) if lower is None else lower:
        return []
    from pipelines.pii.en import street_words
    from pipelines.pii.gate import common_words

    suffix, name = _bare_regexes()
    function, common = _function_words(), common_words()
    out = []
    for m in suffix.finditer(text):
        kind = "strong" if m.group("strong") else "lower" if m.group("lower") else "weak"
        before = name.search(text, max(0, m.start() - 80), m.start())
        if before is None:
            continue
        words = before.group(1).split()
        while words and words[0].casefold() in function:
            words.pop(0)
        if len(words) > 1 and _sentence_initial(
            text, m.start() - len(before.group(1)) + before.group(1).index(words[0])
        ):
            if words[0].casefold() in common:
                words.pop(0)  # "Cross Elm St.": a capitalised verb opening the sentence
        if not words:
            continue
        start = m.start() - len(before.group(1)) + before.group(1).index(words[0])
        end = m.end()
        value = text[start:end]
        context = text[max(0, start - 40) : start]
        strong_context = _STREET_CONTEXT.search(context) is not None
        near = strong_context or _NEAR_CONTEXT.search(context) is not None
        follower = re.match(rf"[ \t]+([A-Z][{_L}'’\-]*)", text[end : end + 40])
        if follower and follower.group(1).casefold() not in function:
            continue  # "Wall Street Journal", "St. Louis", "Dr. Smith", "Abbey Road Studios"
        if re.sub(r"\s+", " ", value).rstrip(".").casefold() in NOT_STREETS:
            continue
        if kind == "weak" and (not strong_context or words[0].casefold() in common):
            continue  # "on Kathryn Pines" is a street, "on Central Park", "on Long Island" are places
        if kind == "lower" and not (strong_context or words[-1].casefold() in street_words()):
            continue  # "a London street"; "Shawn Canyon street", "lives on Donna Fork street" are streets
        if kind == "strong" and person_named_like_street(text, start, end):
            continue  # "Sandra Lane", "Nathan Lane": a person unless the context says street
        out.append(Finding("ADDRESS", start, end, "en_address", BARE_CONTEXT_SCORE if near else BARE_SCORE))
    for m in NUMBERED_ROAD.finditer(text):
        out.append(Finding("ADDRESS", m.start(), m.end(), "en_address", BARE_SCORE))
    return out


def person_named_like_street(text: str, start: int, end: int) -> bool:
    """``text[start:end]`` is a listed given name and a listed surname that is also a street type
    ("Sandra Lane", "Margaret Court"), not after a street context ("lives on"): a person."""
    from pipelines.pii.en import name_lists

    words = text[start:end].split()
    if len(words) != 2 or words[1] not in _SURNAME_TYPES:
        return False
    given, family = name_lists()
    if words[0].casefold() not in given or words[1].casefold() not in family:
        return False
    return _STREET_CONTEXT.search(text[max(0, start - 40) : start]) is None


def _sentence_initial(text: str, pos: int) -> bool:
    before = text[max(0, pos - 3) : pos].rstrip(" \t")
    return not before or before[-1] in '.!?\n"“:;'
