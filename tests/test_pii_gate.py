"""Candidate filters in front of NER, the sentence cache, English addresses and name rules."""

from __future__ import annotations

from pipelines.pii.en import (
    company_spans,
    has_name_word,
    in_foreign_org,
    name_lists,
    pair_names,
    propagate,
    prose_lower_words,
    reads_as_word,
)
from pipelines.pii.en_address import address_findings, street_name_findings
from pipelines.pii.engine import _SPACY_CACHES, analyze_texts
from pipelines.pii.gate import SentenceCache, en_candidate, en_sentence_spans, zh_candidate
from pipelines.pii.recognizers import Finding


def values(text: str, entity: str) -> list[str]:
    """The ``entity`` values the English analyzer finds in ``text``."""
    return [text[f.start : f.end] for f in analyze_texts([text], ["en"])[0] if f.entity == entity]


def people(text: str) -> list[str]:
    """The PERSON values the English analyzer finds in ``text``."""
    return values(text, "PERSON")


def addresses(text: str) -> list[str]:
    """The ADDRESS values the English analyzer finds in ``text``."""
    return values(text, "ADDRESS")


def numbered_addresses(text: str) -> list[str]:
    """The values of `address_findings` (the numbered-address patterns alone) in ``text``."""
    return [text[f.start : f.end] for f in address_findings(text)]


def test_sentences_keep_offsets_and_abbreviations() -> None:
    text = "Mr. J. Smith met Dr. Brown at 12 Baker St. in London. It rained!\nNext line? Yes."
    spans = en_sentence_spans(text)
    pieces = [text[s:e] for s, e in spans]
    assert pieces == ["Mr. J. Smith met Dr. Brown at 12 Baker St. in London.", "It rained!", "Next line?", "Yes."]


def test_english_gate_skips_sentences_without_names() -> None:
    assert not en_candidate("The statutory scheme must be read as a whole.", False)
    assert not en_candidate("The notice served on 14 January 2019 was late.", False)
    assert en_candidate("The evidence of Mr Tomas Lindqvist was preferred.", False)
    assert en_candidate("Portugal was super fun to visit!", False)  # a first word counts unless common
    assert en_candidate("i will be travelling to france next week", True)  # lower-case: places
    assert en_candidate("have you heard daniel morcinek speak yet?", True)  # lower-case: listed names
    assert not en_candidate("we use cookies to improve your experience.", True)


def test_chinese_gate() -> None:
    assert zh_candidate("原告张伟向本院提出诉讼请求。")
    assert zh_candidate("住北京市朝阳区建国路88号")
    assert not zh_candidate("综上所述，判决如下。")


def test_sentence_cache_computes_each_sentence_once() -> None:
    calls: list[list[str]] = []
    cache: SentenceCache[int] = SentenceCache(limit=3)

    def compute(keys: list) -> list[int]:
        calls.append(keys)
        return [len(k) for k in keys]

    assert cache.get_many(["aa", "b", "aa"], compute) == [2, 1, 2]
    assert cache.get_many(["b", "ccc"], compute) == [1, 3]
    assert calls == [["aa", "b"], ["ccc"]] and cache.hits == 2 and cache.misses == 3
    cache.get_many(["dddd"], compute)  # over the limit: cleared, then filled
    assert set(cache.data) == {"dddd"}


def test_sentence_cache_keeps_the_hits_of_the_call_that_fills_it() -> None:
    """A call with cached and new keys that overflows the cache returns every value (it raised
    KeyError for the cached ones once a worker had tagged ``limit`` sentences)."""
    cache: SentenceCache[int] = SentenceCache(limit=3)
    cache.get_many(["a", "bb", "ccc"], lambda keys: [len(k) for k in keys])
    assert cache.get_many(["a", "eeee", "a"], lambda keys: [len(k) for k in keys]) == [1, 4, 1]
    assert set(cache.data) == {"a", "eeee"} and cache.hits == 2 and cache.misses == 4


def test_gate_changes_nothing_on_names_and_sees_each_sentence_once() -> None:
    para = "The contract was signed by Margaret Thompson in Chicago. The court dismissed the claim. "
    texts = [para * 3, "Dear Anna Kowalska, thank you."]
    _SPACY_CACHES.clear()
    gated = analyze_texts(texts, ["en", "en"], gate=True)
    cache = next(iter(_SPACY_CACHES.values()))
    assert "The court dismissed the claim." not in cache.data  # no candidate word: never sent to spaCy
    assert cache.hits >= 2  # the repeated sentence was tagged once
    assert analyze_texts(texts, ["en", "en"], gate=False) == gated


def test_english_addresses() -> None:
    found = numbered_addresses
    assert found("Send it to Kiannonkatu 98, OULU, 90630, Finland please") == ["Kiannonkatu 98, OULU, 90630, Finland"]
    assert found("The restaurant is at 65773 Joseph Keys") == ["65773 Joseph Keys"]
    assert found("meet me at 541 nelson mandela drive, pietersburg, 794, south africa") == [
        "541 nelson mandela drive, pietersburg, 794, south africa"
    ]
    street = "Rua Katumi Kida 435, São Paulo, 08050-595, Brazil"
    assert street in found(f"at {street}")
    assert found("He scored 2 goals in 45 minutes on 12 March 2020.") == []
    # a street made of first names is an address, not a person
    text = "Mrs. Katrine Knudsen Suite 159 667 Williams Shoals"
    assert people(text) == ["Katrine Knudsen"]


def test_street_names_without_a_number() -> None:
    def found(text: str) -> list[tuple[str, int, int]]:
        return [(text[f.start : f.end], f.start, f.end) for f in street_name_findings(text)]

    text = "Ask the driver to stop at the corner of Elm St. and 3rd Ave. please."
    assert found(text) == [("Elm St.", 40, 47), ("3rd Ave.", 52, 60)]
    text = "The bus station is on Kathryn Pines"  # a USPS type that is also a word: after "on"
    assert found(text) == [("Kathryn Pines", 22, 35)]
    assert [v for v, _, _ in found("Turn onto Main Street. Then take Route 66 west.")] == ["Main Street", "Route 66"]
    assert [v for v, _, _ in found("Søren lives on Moore Road street.")] == ["Moore Road", "Moore Road street"]
    assert [v for v, _, _ in found("Pedestrians must enter on Antonio Springs St. the first months")] == [
        "Antonio Springs St."
    ]
    for text in (
        "He read the Wall Street Journal, then walked down Wall Street.",  # a newspaper, a market
        "We flew to St. Louis and saw St. Mary's church.",  # saints
        "Dr. Smith and Dr. Jones agreed.",  # doctors
        "The Supreme Court and the High Court disagreed on Central Park.",  # courts, a park
        "Support lead: Sandra Lane (debbie40@hotmail.com)",  # a person named like a street
        "Charleston Road Registry Inc. runs the zone.",  # a company
        "Upload it to Google Drive; the Milky Way is far.",
        "a london street, all lower case: the corner of elm st. and 3rd ave.",  # lower-case: no bare streets
        "A London street festival",
    ):
        assert found(text) == [], text
    # spaCy/the pair rule read "Fix Travis" as a name (Travis is a listed given name), but "Fix"
    # is an English word: it does not spread to the next line
    assert "Fix" not in found("- Fix Travis CI build on macOS.\n- Fix the cache.")
    # in a whole analysis a street is an ADDRESS, also in sentences the NER gate skips, and
    # "Sandra Lane" stays a person
    text = "Turn onto Main Street. Support lead: Sandra Lane."
    got = {(f.entity, text[f.start : f.end]) for f in analyze_texts([text], ["en"])[0]}
    assert ("ADDRESS", "Main Street") in got and ("PERSON", "Sandra Lane") in got


def test_name_rules_for_repeats_initials_and_address_blocks() -> None:
    assert people("I want to add Trifon J. Yudin as a beneficiary.") == ["Trifon J. Yudin"]  # a middle initial
    # the name line alone above a postal address; a company between them leaves it to NER
    assert people("Haide Árias\n\n6103 Burke Path\n Suite 793\n Sindi\n Estonia 75395") == ["Haide Árias"]
    assert people("Acme Widgets\nCentury House\n12 Baker Street\nLondon") == []
    assert people("The New York Times said that Microsoft Word and Microsoft are popular.") == []


def test_name_rules() -> None:
    text = "Heiðbjört Örlygsdóttir met Pernille Nielsen of Moore, Mccall and Brown."
    assert [text[f.start : f.end] for f in pair_names(text)] == ["Heiðbjört Örlygsdóttir", "Pernille Nielsen"]
    assert [text[s:e] for s, e in company_spans(text)] == ["Moore, Mccall and Brown"]
    text = "Maja Hermansen wrote it, though Hermansen's song was about a boat."
    grown = propagate(text, [Finding("PERSON", 0, 14, "spacy_ner", 0.85)])
    assert [text[f.start : f.end] for f in grown] == ["Maja Hermansen", "Hermansen"]
    people = {
        text[f.start : f.end]
        for text in ("I am Hungarian but I live in Cyprus.", "Krisztián is a very sympathetic person.")
        for f in analyze_texts([text], ["en"])[0]
        if f.entity == "PERSON"
    }
    assert people == {"Krisztián"}  # not the nationality or the country; the given name over spaCy's "place"


def test_names_that_are_no_english_word() -> None:
    """Words that are in no English dictionary (the spaCy model's WordNet tables), spelled like a
    name, in a name's place; none of the rules fires on inflected words, acronyms or jargon."""
    found = people
    assert found("I want to add Wennemar Tjoelker as a beneficiary.") == ["Wennemar Tjoelker"]
    assert found("Ilmatar, could you send the file today?") == ["Ilmatar"]  # addressed by name
    assert found('Ottla: "Are you ready?"\nOttla: "Yes."') == ["Ottla", "Ottla"]  # a speaker, twice
    # a found name's words spread over the document: "Ruuskanen" alone is that person too
    assert found("Everyone said Ruuskanen was late. Ilmatar K. Ruuskanen was there by noon.") == [
        "Ruuskanen",
        "Ilmatar K. Ruuskanen",
    ]
    # all lower case: two words that are no English word, one listed (Verduzco) or surname-shaped
    assert found("bot: whose name is it? user: wennemar verduzco") == ["wennemar verduzco"]
    assert found("i use numpy and pandas daily with xml files") == []
    # a degree after the name: spaCy reads "Wennemar Jones MD" as an organisation
    assert found("Support lead: Wennemar Jones MD (wj@example.org)") == ["Wennemar Jones MD"]
    for text in (
        "* Bump jiter to v0.19.0 by the maintainers.",
        "Efficient and Affordable Post-Training Quantization for Transformers.",
        "* Renamed Settings to Options.",
        "- [COLRv1] Define ClipList and ClipBox.",
    ):
        assert found(text) == [], text
    # spaCy/the pair rule read "Fix Travis" as a name (Travis is a listed given name), but "Fix"
    # is an English word: it does not spread to the next line
    assert "Fix" not in found("- Fix Travis CI build on macOS.\n- Fix the cache.")


def test_address_blocks_with_a_company_line_and_lower_case() -> None:
    found = values
    block = ">Wennemar Tjoelker\n>Blue Harbour Traders\n>Wennemar Tjoelker\n>4471 Kestrel Pass\n>Suite 12\n>Utrecht"
    assert found(block, "PERSON") == ["Wennemar Tjoelker", "Wennemar Tjoelker"]  # the name written twice
    assert found("Acme Widgets\nCentury House\n12 Baker Street\nLondon", "PERSON") == []  # no name twice
    lower = "ilmatar k. ruuskanen\n\n12 birch road\n apt. 7\n tampere\n finland 33100"
    assert found(lower, "PERSON") == ["ilmatar k. ruuskanen"]
    assert "apt. 7" in found(lower, "ADDRESS")  # the unit line after the street, blanked in the gate's view


def test_a_missing_spacy_model_is_named() -> None:
    import pytest

    from pipelines.pii.engine import model_dir

    with pytest.raises(OSError, match="'no_such_model' is not installed"):
        model_dir("no_such_model")
    assert (model_dir() / "lemmatizer" / "lookups").is_dir()  # where dictionary_words() reads


def test_spans_without_a_word_a_name_is_made_of_are_not_people() -> None:
    """Regression (real English, held out): the small model tags "# Licensed under", "Copyright",
    "MIT License" as PERSON; organisations of other languages ("Stichting Mathematisch Centrum")
    read as names too. A person's span keeps a listed name, a word not mostly written in lower
    case, a middle initial, or an e-mail after it."""

    assert people("# Copyright 2017 The Abseil Authors.\n#\n# Licensed under the Apache License.") == []
    assert people("Copyright (c) 1991 - 1995, Stichting Mathematisch Centrum Amsterdam, The Netherlands.") == []
    assert people("Permission is hereby granted by Secret Labs under the MIT License.") == []
    assert people("Convert arrays with NumPy before you load them.") == []
    assert "Fredrik Lundh" in people("# Copyright (c) 1996-2000 by Fredrik Lundh")
    assert "Harsh Jain" in people("Thanks to Harsh Jain for the review.")  # "Harsh" is a word, "Jain" not
    assert "Naman Gera" in people("Naman Gera <namangera15@gmail.com>")
    assert people("Written by Алексей Петров.") == ["Алексей Петров"]  # no Latin word to judge


def test_name_words_and_foreign_organisations() -> None:
    given, family = name_lists()
    assert not has_name_word("Licensed", given, family) and not has_name_word("SOFTWARE", given, family)
    assert not has_name_word("Beautiful Soup", given, family) and not has_name_word("PyTorch", given, family)
    assert has_name_word("Matt Good", given, family)  # "matt" is mostly capitalised
    assert has_name_word("DeRemer", given, family) and has_name_word("Visa K. Godina", given, family)
    text = "by Stichting Mathematisch Centrum and Guido van Rossum at the Universidad Carlos III"
    for value, org in (("Mathematisch", True), ("Guido van Rossum", False), ("Carlos", True)):
        i = text.index(value)
        assert in_foreign_org(text, i, i + len(value)) is org, value


def test_words_the_text_itself_writes_in_lower_case_are_not_names() -> None:
    """Regression (real English module headers and READMEs): "Python", "Matplotlib", "Ray Serve",
    "Handler", "MERCHANTABILITY" were PERSON findings. A capitalised word the same text writes in
    lower case (outside e-mails, URLs, paths) is a product's name, unless the span holds a word of
    a name too; a lone acronym no name list has is not a person."""

    assert people("Matplotlib makes plots.\nIt is easy: import matplotlib and call plot.") == []
    assert people("Ray Serve deploys models. Start a ray cluster first, then run serve.") == []
    assert people("# Handler for the events.\n# The handler reads a queue.") == []
    assert people("WITHOUT ANY WARRANTY; without even the implied warranty of\n# MERCHANTABILITY or FITNESS.") == []
    # the lower-case use inside an e-mail, a URL or an identifier does not count
    text = "Maintained by Waylan Limberg (waylan.limberg@icloud.com), see github.com/waylan."
    assert "Waylan Limberg" in people(text)
    # a word no English word keeps the span ("<li>" does not make "Conglong Li" a product)
    assert "Conglong Li" in people("<ul><li>Paper</li></ul> 7. Conglong Li, Ammar Ahmad Awan and others. (2021)")
    # a lone WordNet word is still a name where the text never writes it in lower case
    assert "Tosh" in people("Tosh is from Consumers Food and Drug")


def test_reads_as_word_is_decided_by_the_text() -> None:
    given, family = name_lists()
    lower = prose_lower_words("import matplotlib; see fredrik@pythonware.com and ray.init(); a handler")
    assert lower >= {"import", "matplotlib", "see", "and", "handler"}  # two letters or more
    assert "fredrik" not in lower and "ray" not in lower
    assert reads_as_word("Matplotlib", given, family, lower)
    assert reads_as_word("Handler", given, family, lower)  # a surname of the lists, a word here
    assert not reads_as_word("Fredrik Lundh", given, family, lower)
    assert not reads_as_word("Matplotlib Fredrik", given, family, lower)  # a listed name stays
    assert reads_as_word("TIFF", given, family, frozenset()) and not reads_as_word("KIM", given, family, frozenset())
    assert not reads_as_word("R. Fielding", given, family, frozenset({"fielding"}))  # an initial's shape


def test_an_organisation_that_is_a_name_after_an_article() -> None:
    """Regression (build leak listing, fresh varied set): spaCy tags "The Takaya Oohara" (a
    version of a song) as ORG, which hid the name inside it as "inside an organisation"."""

    text = "The Takaya Oohara version recorded for Aaronson Furniture became the best known."
    assert people(text) == ["Takaya Oohara"]
    text = "The Borislava K. Božić version recorded for Destiny Planners became the best known."
    assert "Borislava K. Božić" in people(text)


def test_lower_case_names_in_a_persons_position() -> None:
    # in a text without capitals, a word that is no English word is a candidate, and a name where
    # a person stands: addressed at the start of a sentence, or the subject of "said", "was a"
    assert en_candidate("ondrej, could you send me the file?", True)
    assert not en_candidate("we all knew pizza was a great idea", True)
    assert people("ondrej, could you send me the file?") == ["ondrej"]
    assert people("we all knew brenlo was a great cook") == ["brenlo"]
    assert people("we all knew pizza was a great idea") == []
    assert people("pizza, can you believe it?") == []


def test_names_with_particles() -> None:
    assert people("Please forward it to Marta van Houten today.") == ["Marta van Houten"]
    assert people("Guido van Rossum created Python.") == ["Guido van Rossum"]
    assert people("She studied at the Universidad de Granada in Spain.") == []  # no given name first


def test_street_types_that_are_common_words_need_a_street_name() -> None:
    found = numbered_addresses
    assert found("Ship to 4410 Maple Land, Dover") == ["4410 Maple Land"]
    assert found("We'll meet at 12 Rowan Fall at noon") == ["12 Rowan Fall"]
    assert found("Registration for the 2019 Fall semester opens") == []
    assert found("Apollo 11 Mission Control") == []


def test_organisations_that_are_a_possessive_name_or_a_list_of_names() -> None:
    # spaCy tags these ORG; the names in them are people all the same
    assert people("Morgan Fowler's killers sentenced to life in prison") == ["Morgan Fowler"]
    assert people("They had 3: Selma, Selma and Selma.") == ["Selma", "Selma", "Selma"]
    assert people("Johnson & Johnson makes plasters.") == []  # no comma list: a company


def test_owners_of_a_persons_things() -> None:
    assert people("It was a done thing between him and Nayla's kid.") == ["Nayla"]
    assert people("Microsoft's phone number is on the site.") == []  # companies have numbers
    assert "serdar" in people("my name is serdar w. van bokhorst but everyone calls me serdar")


def test_postcodes_named_as_such_and_in_address_blocks() -> None:
    assert addresses("My zip code is 01669") == ["01669"]
    assert addresses("Postcode: GU8 6PN, thanks") == ["GU8 6PN"]
    assert addresses("The code is 01669") == []
    # the postcode line of a block has no word the NER gate passes, and is found all the same
    block = "Mr. Pomeroy Guibord\n438 Smith Meadows Suite 645\n    Hueb\n    MT\n    00980\nThanks"
    assert "00980" in addresses(block)
