"""Raw material for realistic, messy Keap data: names, places, phones, currencies (plain tuples)."""

from __future__ import annotations

# (given, ascii form for e-mail local parts). Non-ASCII on purpose: Keap accounts are international.
GIVEN_NAMES: tuple[tuple[str, str], ...] = (
    ("Mary", "mary"), ("John", "john"), ("Zoë", "zoe"), ("Łukasz", "lukasz"), ("José", "jose"),
    ("Søren", "soren"), ("Chloé", "chloe"), ("Ana", "ana"), ("Mohammed", "mohammed"), ("Ольга", "olga"),
    ("太郎", "taro"), ("花子", "hanako"), ("Siobhán", "siobhan"), ("François", "francois"),
    ("Jürgen", "jurgen"), ("Priya", "priya"), ("Wei", "wei"), ("Ngozi", "ngozi"), ("Ælfrida", "aelfrida"),
    ("Björk", "bjork"), ("Renée", "renee"), ("Dmitrij", "dmitrij"), ("Fatima", "fatima"), ("O'Neil", "oneil"),
    ("Anne-Marie", "annemarie"), ("Li", "li"), ("Émile", "emile"), ("Giulia", "giulia"), ("Seán", "sean"),
    ("Mariana", "mariana"), ("David", "david"), ("Sarah", "sarah"), ("Jennifer", "jennifer"), ("Michael", "michael"),
)
FAMILY_NAMES: tuple[tuple[str, str], ...] = (
    ("Smith", "smith"), ("Ñúñez", "nunez"), ("山田", "yamada"), ("Müller", "muller"), ("García", "garcia"),
    ("Kowalski", "kowalski"), ("Nguyễn", "nguyen"), ("O'Brien", "obrien"), ("Dubois", "dubois"),
    ("Иванова", "ivanova"), ("Østergaard", "ostergaard"), ("van der Berg", "vanderberg"), ("Okafor", "okafor"),
    ("Papadopoulos", "papadopoulos"), ("Çelik", "celik"), ("Johnson", "johnson"), ("Brown", "brown"),
    ("Lefèvre", "lefevre"), ("Hernández", "hernandez"), ("Kim", "kim"), ("佐藤", "sato"), ("Singh", "singh"),
    ("Wiśniewska", "wisniewska"), ("Jones", "jones"), ("Ó Súilleabháin", "osuilleabhain"), ("Williams", "williams"),
)
MIDDLE_NAMES: tuple[str, ...] = ("J.", "Marie", "Ann", "Lee", "Ío", "K")
PREFERRED_NAMES: tuple[str, ...] = ("Bex", "Zo", "🌻 Sunny", "Łuki", "Tom 🎸", "DJ")
EMAIL_DOMAINS: tuple[str, ...] = (
    "example.com", "example.org", "mail.example.net", "example.co.uk", "beispiel.example.de", "example.jp",
)
JOB_TITLES: tuple[str, ...] = (
    "Owner", "CEO", "Office Manager", "Geschäftsführerin", "Directeur général", "営業部長", "Coach",
    "Bookkeeper", "Marketing Lead", "Président·e",
)
TIME_ZONES: tuple[str, ...] = (
    "America/New_York", "America/Phoenix", "Europe/London", "Europe/Berlin", "Asia/Tokyo", "Australia/Sydney",
    "America/Sao_Paulo", "Africa/Lagos",
)
LOCALES: tuple[str, ...] = ("en_US", "en_GB", "de_DE", "fr_FR", "ja_JP", "es_MX", "pl_PL", "pt_BR")
CONTACT_TYPES: tuple[str, ...] = ("Lead", "Customer", "Other", "Vendor")
SOURCE_TYPES: tuple[str, ...] = ("API", "IMPORT", "MANUAL", "WEBFORM", "LANDING_PAGE", "INTERNAL_FORM")
OPT_STATUSES: tuple[str, ...] = (
    "UNENGAGED_MARKETABLE", "SINGLE_OPT_IN", "DOUBLE_OPT_IN", "NON_MARKETABLE", "HARD_BOUNCE", "LIST_UNSUBSCRIBE",
)

# (number as people type it, type label) from several countries
PHONES: tuple[tuple[str, str], ...] = (
    ("(480) 555-0142", "Work"), ("+1 602 555 0199", "Mobile"), ("+44 20 7946 0958", "Work"),
    ("+49 30 901820", "Home"), ("+81 3-1234-5678", "Mobile"), ("+33 1 23 45 67 89", "Other"),
    ("+61 2 9876 5432", "Work"), ("+55 11 91234-5678", "Mobile"), ("+48 22 123 45 67", "Home"),
    ("+234 803 123 4567", "Mobile"), ("555-0100", "Work"), ("+52 55 1234 5678", "Mobile"),
)
PHONE_EXTENSIONS: tuple[str, ...] = ("", "", "", "12", "4410")

# (line1, locality, region_code, postal_code, country_code ISO 3166-1 alpha-3)
ADDRESSES: tuple[tuple[str, str, str, str, str], ...] = (
    ("1 E Main St", "Chandler", "US-AZ", "85225", "USA"),
    ("221B Baker Street", "London", "GB-ENG", "NW1 6XE", "GBR"),
    ("Königstraße 12", "Stuttgart", "DE-BW", "70173", "DEU"),
    ("1-1-2 Ōtemachi", "千代田区", "JP-13", "100-0004", "JPN"),
    ("12 Rue de Rivoli", "Paris", "FR-IDF", "75004", "FRA"),
    ("ul. Marszałkowska 84/92", "Warszawa", "PL-14", "00-514", "POL"),
    ("Av. Paulista, 1578", "São Paulo", "BR-SP", "01310-200", "BRA"),
    ("10 Eagle Street", "Brisbane", "AU-QLD", "4000", "AUS"),
    ("Calle de Alcalá 50", "Madrid", "ES-MD", "28014", "ESP"),
    ("5 Adeola Odeku St", "Lagos", "NG-LA", "101241", "NGA"),
    ("350 5th Ave", "New York", "US-NY", "10118", "USA"),
    ("Av. Reforma 222", "Ciudad de México", "MX-CMX", "06600", "MEX"),
)
ADDRESS_FIELDS: tuple[str, ...] = ("BILLING", "SHIPPING", "OTHER")

COMPANY_WORDS: tuple[str, ...] = (
    "Acme", "Globex", "Initech", "Umbrella", "Soylent", "Wayne", "Stark", "Tyrell", "Nakatomi", "Cyberdyne",
    "Vandelay", "Łódź Logistics", "Müller & Söhne", "山田商事", "Boulangerie Dupont", "Ñandú",
)
COMPANY_SUFFIXES: tuple[str, ...] = ("Inc.", "LLC", "GmbH", "Ltd", "S.A.", "株式会社", "Sp. z o.o.", "& Co")

TAG_WORDS: tuple[str, ...] = (
    "Lead", "Customer", "Newsletter", "VIP", "Webinar 2024", "Cold", "Hot", "Refund requested", "Partner",
    "Événement", "セミナー", "Abandoned cart", "Trial", "Churned", "Affiliate",
)
TAG_CATEGORIES: tuple[str, ...] = (
    "Lead Source", "Customer Type", "Products", "Events", "Nurture", "Internal", "Kategorie Ä", "その他",
)

PRODUCT_WORDS: tuple[str, ...] = (
    "Coaching Session", "Starter Kit", "Premium Membership", "E-book", "Workshop Ticket", "Consulting Hour",
    "T-shirt", "Café Blend 250g", "年間プラン", "Annual Plan", "Mastermind", "Gift Card",
)

# (ISO code, minor-unit digits, symbol): JPY has none, KWD three; amounts are in the smallest unit.
CURRENCIES: tuple[tuple[str, int, str], ...] = (
    ("USD", 2, "$"), ("USD", 2, "$"), ("USD", 2, "$"), ("EUR", 2, "€"), ("GBP", 2, "£"), ("JPY", 0, "¥"),
    ("KWD", 3, "KD"), ("CAD", 2, "CA$"), ("AUD", 2, "A$"),
)


def format_amount(amount: int, digits: int, symbol: str) -> str:
    """How Keap shows an amount given in the smallest unit: 123456 USD -> $1,234.56, 1500 JPY -> ¥1,500.

    Args:
        amount: amount in the currency's smallest unit.
        digits: minor-unit digits of the currency.
        symbol: currency symbol.

    Returns:
        The formatted amount, e.g. $1,234.56.
    """
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**digits) if digits else (abs(amount), 0)
    text = f"{whole:,}" + (f".{frac:0{digits}d}" if digits else "")
    return f"{sign}{symbol}{text}"
