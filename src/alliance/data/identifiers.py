"""Detectors of direct identifiers in column names and cell values, in several languages.

The de-identification gate (:mod:`alliance.deid`) asks two questions of every kept column: does
its name announce an identifier, and do its values hold one. Names are matched on accent-folded,
lower-cased tokens and compounds against vocabularies in English, German, French, Spanish,
Italian, Dutch, Portuguese and the Scandinavian languages. Values are checked with maintained
libraries where they exist: ``python-stdnum`` (national and health-insurance numbers, by their
check digits), ``phonenumbers`` (telephone numbers of the regions of those languages) and
``dateparser`` (dates written with month words of many languages). Every detector sees each
distinct value once; the expensive parsers only see values a cheap pre-filter let through.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from datetime import date
from functools import lru_cache

# --- column names ----------------------------------------------------------------------------

_NAME_WORDS = {
    "name": """name names firstname lastname surname forename fullname givenname familyname
        maidenname initials initialen initiales patientname clientname therapistname
        vorname nachname familienname rufname geburtsname prenom nom nomdefamille nomfamille
        nombre nombres apellido apellidos nome cognome naam voornaam achternaam familienaam
        roepnaam sobrenome apelido fornavn efternavn etternavn mellemnavn navn namn fornamn
        efternamn tilltalsnamn""",
    "contact detail": """email mail phone telephone tel mobile cell cellphone fax handy
        telefon telefonnummer mobil mobilnummer festnetz telefono telefone telephone portable
        celular movil cellulare telefonino telefoon mobiel gsm address adresse adres direccion
        domicilio indirizzo endereco morada strasse street rue calle straat gata gade gate vej
        hausnummer wohnort anschrift city town ville ciudad citta stad cidade woonplaats
        localidad localita url website homepage webseite ip ipaddress ipadresse instagram
        facebook twitter linkedin tiktok""",
    "postcode": """postcode zip zipcode postal postalcode plz postleitzahl codepostal cp
        codigopostal cap cep postnummer postnr""",
    "calendar date": """date dob birth birthday birthdate dateofbirth geburtsdatum geburtstag
        geboren datum datenaissance naissance fecha fechanacimiento nacimiento data datadinascita
        nascita datanascimento nascimento geboortedatum geboorte fodelsedatum fodelsedag
        fodselsdato fodselsdag dato timestamp datetime admission discharge aufnahme entlassung""",
    "free-text note": """note notes comment comments remark remarks freetext narrative text memo
        anmerkung anmerkungen bemerkung bemerkungen kommentar kommentare notiz notizen freitext
        commentaire commentaires remarque remarques nota notas comentario comentarios
        observacion observaciones osservazione osservazioni commento commenti opmerking
        opmerkingen notitie notities toelichting observacao observacoes anotacao anteckning
        anteckningar anmarkning merknad merknader bemaerkning bemaerkninger""",
    "record number": """nhs ssn mrn insurance passport socialsecurity medicalrecord
        versicherungsnummer krankenversicherungsnummer kvnr versichertennummer fallnummer
        patientennummer aktenzeichen svnr sozialversicherungsnummer ahv nir insee
        securitesociale dni nie nif nss codicefiscale bsn burgerservicenummer cpf nino
        personnummer cpr fodselsnummer casenumber recordnumber""",
}
COLUMN_WORDS = {kind: frozenset(words.split()) for kind, words in _NAME_WORDS.items()}
# Words long enough to be recognised inside a compound (patientenname, telefonnummer, ...).
_COMPOUND_MIN = 4
# ... but not words that end or start ordinary ones (ethnicity, update, context, mobility, memory).
_NOT_IN_COMPOUNDS = frozenset({"data", "date", "nota", "text", "gate", "gade", "cell", "city", "stad",
                               "mobil", "memo", "nome", "town"})


def fold(text: str) -> str:
    """Lower-cased text without accents (``Prénom`` -> ``prenom``, ``Straße`` -> ``strasse``)."""
    text = str(text).replace("ß", "ss").replace("ø", "o").replace("Ø", "o").replace("æ", "ae")
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def column_tokens(column: str) -> list[str]:
    """A column name's words: split at non-letters and at camelCase, folded."""
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", str(column))
    return [t for t in re.split(r"[^a-z]+", fold(spaced)) if t]


def column_kind(column: str) -> str | None:
    """The kind of identifier a column's name announces, or None."""
    tokens = column_tokens(column)
    joined = "".join(tokens)
    pairs = {a + b for a, b in zip(tokens, tokens[1:])}
    candidates = set(tokens) | pairs | {joined}
    for kind, words in COLUMN_WORDS.items():
        if candidates & words:
            return kind
    for kind, words in COLUMN_WORDS.items():
        for token in tokens:
            for word in words:
                if (len(word) >= _COMPOUND_MIN and word not in _NOT_IN_COMPOUNDS and len(token) > len(word)
                        and (token.endswith(word) or token.startswith(word))):
                    return kind
    return None


# --- values ----------------------------------------------------------------------------------

_EMAIL = re.compile(r"[^\s@]+\s*(?:@|\(at\)|\[at\]|\{at\}|\s+at\s+)\s*[^\s@]+\s*(?:\.|\(dot\)|\[dot\]|\s+dot\s+)\s*[a-z]{2,}", re.I)
_URL = re.compile(r"(?:https?://|www\.|\b(?:facebook|instagram|twitter|linkedin|tiktok|xing|youtube)\.com\b|\bx\.com/)", re.I)
_POSTCODE = re.compile(
    r"^\s*(?:[a-z]{1,2}\d[a-z\d]?\s*\d[a-z]{2}"          # United Kingdom
    r"|[a-z]\d[a-z]\s?\d[a-z]\d"                          # Canada
    r"|[1-9]\d{3}\s?[a-z]{2}"                             # Netherlands
    r"|[ac-fhknprtv-y]\d[\dw]\s(?=[\dac-fhknprtv-y]{4}\s*$)[\dac-fhknprtv-y]{4}"  # Eircode, spaced
    r"|[ac-fhknprtv-y]\d[\dw](?=\d*[ac-fhknprtv-y])[\dac-fhknprtv-y]{4}"  # Eircode, unspaced
    r"|(?:[a-z]{1,2}-)?\d{4,5}\s+[^\W\d_]{3,}(?:[\s-][^\W\d_]+)*)\s*$",  # postcode + city
    re.I)
_STREET_WORDS = (r"stra(?:ss|ß)e|str\.|strasse|gasse|weg|allee|platz|ring|damm|street|st\.|road|rd\.?|"
                 r"avenue|ave\.?|lane|drive|boulevard|blvd|rue|chemin|calle|avenida|via|viale|piazza|"
                 r"straat|laan|gracht|plein|rua|travessa|gata|gatan|vej|vei|veien|gade")
_STREET = re.compile(
    rf"(?:[^\W\d_]+(?:{_STREET_WORDS})\s*\d+\s*[a-z]?\b|\b(?:{_STREET_WORDS})\b.*\d|\d+[a-z]?,?\s+[^\W\d_]+.*\b(?:{_STREET_WORDS})(?:\s|$))",
    re.I)
_TITLES = frozenset(fold(t) for t in """dr dr. prof prof. praxis herr frau mr mr. mrs mrs. ms ms. miss
    dipl dipl. dipl.-psych. dipl.-psych psych. msc m.sc. m.sc bsc b.sc. mag mag. dott dott. dott.ssa
    sr sr. sra sra. srta mme mme. mlle m. dhr dhr. mevr mevr. fru hr. sig. sig.ra ing. phd ph.d.
    lic. cand.psych. psychologin psychologe therapeutin""".split())
_TITLE_TOKEN = re.compile(r"[^\s,;()]+")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
_WORD = re.compile(r"[^\W\d_]{2,}")
_LETTERS_ONLY = re.compile(r"^[^\W\d_]+(?:[\s'\-.]+[^\W\d_]+)*\.?$")
_INITIALS_YEAR = re.compile(r"^[^\W\d_]{1,3}[\s._-]?(?:19|20)\d{2}$|^(?:19|20)\d{2}[\s._-]?[^\W\d_]{1,3}$")
_DIGIT_DATE = re.compile(r"^\s*(\d{1,4})\s*[./\-\s]\s*(\d{1,2})\s*[./\-\s]\s*(\d{1,4})(?:[ T].*)?\s*$")
_EIGHT_DIGITS = re.compile(r"^\s*(\d{8})(?:\.0+)?\s*$")
_PHONE_CHARS = re.compile(r"^\s*\+?[\d\s()\-./]{6,}\s*$")
_LONG_DIGITS = re.compile(r"\d{7,}")
_DECIMAL = re.compile(r"^\s*[+-]?\d*\.\d+(?:e[+-]?\d+)?\s*$", re.I)  # 0.4516854512950959 is a measurement

MONTHS = frozenset(fold(m) for m in """january february march april may june july august september
    october november december jan feb mar apr jun jul aug sep sept oct nov dec
    januar februar marz mai juni juli oktober dezember janner feber
    janvier fevrier mars avril juin juillet aout septembre octobre novembre decembre
    enero febrero marzo abril mayo junio julio agosto septiembre setiembre octubre noviembre diciembre
    gennaio febbraio aprile maggio giugno luglio settembre ottobre dicembre
    januari februari maart mei augustus
    janeiro fevereiro marco maio junho julho setembro outubro novembro dezembro
    mars maj augusti oktober
    marts
    январь февраль март апрель май июнь июль август сентябрь октябрь ноябрь декабрь
    января февраля марта апреля мая июня июля августа сентября октября ноября декабря""".split())
DATE_LANGUAGES = ["en", "de", "fr", "es", "it", "nl", "pt", "sv", "da", "nb", "ru"]
PHONE_REGIONS = ["DE", "AT", "CH", "GB", "IE", "US", "CA", "FR", "BE", "ES", "IT", "NL", "PT", "BR",
                 "SE", "DK", "NO", "FI"]
FREE_TEXT_WORDS = 6


def is_email(value: str) -> bool:
    return bool(_EMAIL.search(value))


def is_url(value: str) -> bool:
    return bool(_URL.search(value))


def is_ip_address(value: str) -> bool:
    text = value.strip()
    if "." not in text and ":" not in text:
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def is_postcode(value: str) -> bool:
    return bool(_POSTCODE.match(value))


def is_street_address(value: str) -> bool:
    return bool(_STREET.search(value))


def has_title(value: str) -> bool:
    """A title or practice word (Dr., Prof., Praxis, Frau, Mr, Dipl.-Psych. ...) among the words."""
    tokens = [fold(t) for t in _TITLE_TOKEN.findall(value)]
    return len(tokens) >= 2 and any(t in _TITLES or t.rstrip(".") in _TITLES for t in tokens)


def looks_like_name(value: str) -> bool:
    """Letters of any script with at most spaces, hyphens, apostrophes and dots between them,
    at least one lower-case letter (a code such as ``CBT`` is upper case) and three letters."""
    text = value.strip()
    return (bool(_LETTERS_ONLY.match(text)) and sum(c.isalpha() for c in text) >= 3
            and any(c.islower() for c in text))


def is_initials_and_year(value: str) -> bool:
    return bool(_INITIALS_YEAR.match(value.strip()))


def word_count(value: str) -> int:
    """Words of any script; a run of CJK characters counts one word per character."""
    cjk = len(_CJK.findall(value))
    return len(_WORD.findall(_CJK.sub(" ", value))) + cjk


def _plausible(year: int, month: int, day: int) -> bool:
    if year < 100:
        year += 1900 if year > date.today().year % 100 else 2000
    if not 1900 <= year <= date.today().year + 1:
        return False
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


def is_digit_date(value: str) -> bool:
    """Dates written in digits: 1987/04/03, 03.04.1987, 4-3-87, 19870403, 03041987."""
    m = _DIGIT_DATE.match(value)
    if m:
        a, b, c = (int(g) for g in m.groups())
        la, lc = len(m.group(1)), len(m.group(3))
        if la == 4:
            return lc <= 2 and _plausible(a, b, c)
        if la <= 2 and lc in (2, 4):
            return _plausible(c, b, a) or _plausible(c, a, b)
        return False
    m = _EIGHT_DIGITS.match(value)
    if m:
        s = m.group(1)
        return (_plausible(int(s[:4]), int(s[4:6]), int(s[6:])) or
                _plausible(int(s[4:]), int(s[2:4]), int(s[:2])))
    return False


def has_month_word(value: str) -> bool:
    return any(t.rstrip(".") in MONTHS for t in re.findall(r"[^\W\d_]+\.?", fold(value))) and any(
        c.isdigit() for c in value)


@lru_cache(maxsize=4096)
def is_worded_date(value: str) -> bool:
    """A date written with a month word in any of ``DATE_LANGUAGES`` ("3. April 1987")."""
    if not has_month_word(value):
        return False
    import dateparser

    parsed = dateparser.parse(value, languages=DATE_LANGUAGES,
                              settings={"STRICT_PARSING": False, "PREFER_DAY_OF_MONTH": "first"})
    if parsed is None:
        from dateparser.search import search_dates

        found = search_dates(value, languages=DATE_LANGUAGES)
        return bool(found)
    return 1900 <= parsed.year <= date.today().year + 1


def _kvnr_valid(number: str) -> bool:
    """German health-insurance number (Krankenversichertennummer): a letter, 8 digits, a check digit."""
    if not re.fullmatch(r"[A-Z]\d{9}", number):
        return False
    digits = f"{ord(number[0]) - 64:02d}" + number[1:9]
    total = 0
    for i, d in enumerate(digits):
        p = int(d) * (1 if i % 2 == 0 else 2)
        total += p // 10 + p % 10
    return total % 10 == int(number[9])


_NINO = re.compile(r"^(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]\d{6}[A-D]$")

# stdnum modules: (country.module, strong) - a strong number (letters or a long checksum) is
# refused on a single value; a weak one (any 9 digits pass a US SSN's check) only when most values match.
_STDNUM = [("gb.nhs", True), ("fr.nir", True), ("es.dni", True), ("es.nie", True),
           ("it.codicefiscale", True), ("se.personnummer", True), ("dk.cpr", True),
           ("no.fodselsnummer", True), ("fi.hetu", True), ("be.nn", True), ("br.cpf", True),
           ("ch.ssn", True), ("ie.pps", True), ("at.vnr", False), ("nl.bsn", False),
           ("ca.sin", False), ("us.ssn", False)]


@lru_cache(maxsize=None)
def _stdnum_module(name: str):
    import importlib

    return importlib.import_module(f"stdnum.{name}")


def national_number(value: str) -> str | None:
    """``'strong'`` or ``'weak'`` if the value validates as a national or insurance number."""
    if _DECIMAL.match(value):
        return None
    compact = re.sub(r"[\s./\-]", "", value.strip()).upper()
    if not 8 <= len(compact) <= 16 or not any(c.isdigit() for c in compact):
        return None
    if _kvnr_valid(compact) or _NINO.match(compact):
        return "strong"
    us_ssn_formatted = bool(re.fullmatch(r"\s*\d{3}-\d{2}-\d{4}\s*", value))
    if us_ssn_formatted and _stdnum_module("us.ssn").is_valid(compact):
        return "strong"
    weak = False
    for name, strong in _STDNUM:
        try:
            ok = _stdnum_module(name).is_valid(compact)
        except Exception:  # a module that cannot parse this shape says no
            ok = False
        if ok:
            if strong and (not compact.isdigit() or len(compact) >= 10):
                return "strong"
            weak = True
    return "weak" if weak else None


@lru_cache(maxsize=8192)
def is_phone_number(value: str) -> bool:
    """A telephone number valid in one of ``PHONE_REGIONS`` (``0049 30 ...``, ``030/1234567``)."""
    if not _PHONE_CHARS.match(value) or _DECIMAL.match(value):
        return False
    digits = re.sub(r"\D", "", value)
    prefixed = value.strip()[:1] in ("+", "0", "(")
    if not (7 if prefixed else 8) <= len(digits) <= 15:
        return False
    import phonenumbers

    for region in PHONE_REGIONS:
        try:
            number = phonenumbers.parse(value, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return True
    return False


def long_digit_run(value: str) -> bool:
    """Seven or more digits in a row, spaces aside: a record, case or phone number, not a code
    (``2023-001``, a year and a serial number, is a code)."""
    return bool(_LONG_DIGITS.search(re.sub(r"\s", "", value)))
