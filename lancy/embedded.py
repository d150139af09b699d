"""Offline synthetic stand-ins for six Hugging Face datasets (the `data.source: embedded` default).

Everything here is SYNTHETIC: the rows are produced by this project from small templates, word lists
and invented names. They are not samples, excerpts or paraphrases of the real datasets, and no text of
the real datasets ships with lancy. What the stand-ins copy is the shape: each row has exactly the real
dataset's columns, in the same order and with the same types, and the text imitates its style
(IMDB reviews with "<br /><br />", lowercase spaced-out SST-2 phrases, MRPC news sentence pairs,
FinancialPhraseBank company news with spaced punctuation, GSM8K worked answers with <<calculator>>
annotations and a "#### n" line, wikitext-2-raw lines).

    imdb      {"text": str, "label": int}                                  0 negative, 1 positive
    sst2      {"sentence": str, "label": int, "idx": int}                  0 negative, 1 positive
    mrpc      {"sentence1": str, "sentence2": str, "label": int, "idx": int}  0 not_equivalent, 1 equivalent
    fpb_allagree {"sentence": str, "label": int}                           0 negative, 1 neutral, 2 positive
    gsm8k     {"question": str, "answer": str}
    wikitext  {"text": str}

The labels are learnable by construction: a positive review holds positive sentiment expressions from
POSITIVE_TERMS and none from NEGATIVE_TERMS (and vice versa); an equivalent MRPC pair keeps every fact
of sentence1 while a non-equivalent one changes a number, an entity or the action; a FinancialPhraseBank
sentence's label is what it reports (a figure up or a deal won, a figure down or jobs cut, a plain fact),
in words no other stand-in labels; every GSM8K answer's arithmetic is correct. `generate` is deterministic
in (name, split, n_rows, seed): it uses only a `random.Random` seeded with the string f"{seed}-{name}-{split}",
which is stable across processes.

Train and test share no row, by construction: a drawn row belongs to the split that a hash of its
identifying text picks (one in TEST_BUCKETS goes to test), and each split keeps only its own rows. The
identifying text is what lancy.mixing matches held-out rows by: the review, the sentence, the sentence
pair, the question; a wikitext article goes whole to one split, by its title line.
"""
import hashlib
import random
import re

EMBEDDED_DATASETS: tuple[str, ...] = ("imdb", "sst2", "mrpc", "fpb_allagree", "gsm8k", "wikitext")
SPLITS = ("train", "test")


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def _phrases(text: str) -> tuple[str, ...]:
    """'a | b c |\n d' -> ('a', 'b c', 'd'): phrases split on '|', whitespace (line breaks too) collapsed."""
    return tuple(" ".join(p.split()) for p in text.split("|") if p.strip())


# ---------------------------------------------------------------- sentiment (imdb, sst2)
POSITIVE_WORDS = _words("""
brilliant wonderful superb excellent outstanding magnificent delightful charming captivating compelling
engaging engrossing enchanting gripping moving touching heartfelt heartwarming hilarious witty clever
inventive stunning gorgeous beautiful breathtaking dazzling masterful flawless polished thrilling riveting
refreshing uplifting inspiring memorable remarkable extraordinary terrific fantastic marvelous splendid
sublime exquisite elegant graceful poignant powerful tender vibrant joyous smart intelligent insightful
thoughtful profound satisfying rewarding entertaining enjoyable likable lovely impressive absorbing
irresistible spellbinding sparkling luminous wise sincere affecting first-rate top-notch well-crafted
""")
NEGATIVE_WORDS = _words("""
awful terrible dreadful horrible atrocious abysmal dismal dull boring tedious tiresome lifeless bland
stale lame clumsy sloppy shoddy amateurish incoherent pointless senseless mindless predictable formulaic
derivative unoriginal uninspired forgettable mediocre lackluster disappointing frustrating annoying
irritating grating obnoxious unbearable unwatchable excruciating laughable ridiculous stupid shallow
hollow pretentious bloated overlong plodding sluggish meandering muddled confusing messy choppy stilted
cheesy trite hackneyed contrived implausible insulting hideous miserable worthless embarrassing
cringeworthy lazy weak poor bad
""")
POSITIVE_PHRASES = _phrases("""
a must-see | worth every minute | a real treat | a genuine triumph | pure joy to watch | a small miracle |
a knockout | a crowd-pleaser | a total delight | one of the best films of the year | a gem
""")
NEGATIVE_PHRASES = _phrases("""
a waste of time | a complete mess | painful to sit through | a total letdown | a chore to watch |
a misfire | a colossal bore | one of the worst films of the year | a train wreck | a dud
""")
POSITIVE_TERMS = POSITIVE_WORDS + POSITIVE_PHRASES
NEGATIVE_TERMS = NEGATIVE_WORDS + NEGATIVE_PHRASES
_SENTIMENT = frozenset(POSITIVE_WORDS + NEGATIVE_WORDS)

# ---------------------------------------------------------------- shared word lists (all neutral)
FEMALE_NAMES = _words("""
Natalia Mary Olivia Emma Sofia Amara Priya Mei Fatima Grace Hannah Chloe Isabel Lucia Maya Nora Ruth Sara
Tara Uma Vera Wendy Yara Zoe Alice Bella Clara Diana Elena Fiona Gina Helen Irene Julia Kara Lena Mona Nina
Paula Rosa Selma Tessa Ingrid Aisha Leila Keiko Anika Beatriz Carmen Daria Esther Freya Greta Hazel Ivy
Jade Lorna Maren Noelle Opal Petra Rhea Sana Thea Valeria Willa Ximena Yuki Zara Agnes Brigid Celeste
""")
MALE_NAMES = _words("""
James Ravi Omar Liam Noah Mateo Hiro Kwame Lucas Ethan Felix Gabriel Hugo Ivan Jonas Karl Leo Marco Nikhil
Oscar Pablo Rafael Samuel Tomas Victor Wei Yusuf Zane Arjun Bruno Carlos Dmitri Elias Farid Gustav Henry
Ian Jamal Kenji Lars Miles Nathan Otto Pedro Quentin Rohan Stefan Tariq Umar Vikram Walter Xavier Yosef
Aaron Boris Cyrus Emil Finn George Hector Anselm Bertrand Cormac Desmond Edgar Florian Gideon
""")
FIRST_NAMES = FEMALE_NAMES + MALE_NAMES
SURNAMES = _words("""
Smith Garcia Okafor Tanaka Novak Schmidt Rossi Kowalski Haddad Nguyen Patel Silva Andersen Moreau Dubois
Jensen Larsen Petrov Mendes Fischer Becker Romano Ricci Costa Ferreira Alvarez Castillo Morales Ortega
Reyes Herrera Medina Vargas Kimura Sato Suzuki Watanabe Yamamoto Nakamura Chen Wang Zhang Liu Huang Zhou
Kumar Singh Sharma Gupta Iyer Mensah Boateng Adeyemi Nwosu Kariuki Mwangi Abebe Tesfaye Cohen Levy Katz
Friedman Walsh Murphy Kelly Byrne Doyle Brennan Gallagher MacLeod Campbell Stewart Fraser Hughes Evans
Price Morgan Lloyd Harris Clarke Turner Parker Collins Edwards Bennett Hayes Foster Russell Griffin
Holt Lindqvist Berg Nilsson Virtanen Korhonen Horvat Kovac Popescu Ionescu Yilmaz Demir Karimi Rahimi
""")
OCCUPATIONS = _words("""
baker teacher nurse carpenter farmer pilot sailor painter sculptor architect engineer chemist physician
surgeon librarian journalist photographer tailor blacksmith fisherman miner merchant banker lawyer judge
clerk cartographer astronomer botanist geologist historian novelist poet composer violinist pianist singer
dancer mechanic electrician plumber gardener shepherd beekeeper potter weaver jeweler watchmaker bookseller
printer translator diplomat soldier detective inspector surveyor accountant chef waiter courier locksmith
veterinarian pharmacist dentist professor student archivist curator lighthouse-keeper ferryman stonemason
glassblower brewer cobbler innkeeper postmaster mapmaker bookbinder clockmaker
""")
OBJECTS = _words("""
lantern map key letter coin ring compass clock bell book notebook photograph painting statue mirror bottle
basket box crate barrel ladder rope anchor engine wheel wagon bicycle radio telephone camera telescope
microscope violin piano drum guitar trumpet flag banner badge medal trophy crown sword shield helmet cloak
scarf hat boot glove jacket ribbon necklace bracelet lamp candle stove kettle cup plate spoon bowl jar
envelope parcel ticket passport diary journal ledger manuscript scroll poster postcard record recorder
typewriter suitcase umbrella pocketwatch locket music-box chessboard puzzle globe quilt blanket canoe kite
motorcycle tractor sketchbook hammer lockbox thermos gramophone harmonica accordion saddle
""")
PLACES = _words("""
harbor island valley mountain forest lake desert canyon cave beach meadow orchard vineyard hill cliff
glacier swamp marsh pond stream waterfall factory farm mill bakery library museum theater hotel hospital
school church temple castle fortress palace cottage cabin barn warehouse shop cafe restaurant office
station market lighthouse observatory monastery boarding-house shipyard quarry ranch plantation bazaar
circus brewery laundry greenhouse garage diner motel casino courthouse prison embassy newsroom
""")
ADJECTIVES = _words("""
old small large tall narrow wide heavy tiny enormous ancient modern stone iron silver golden copper brass
red blue green yellow grey black white crimson amber pale dark hidden secret forgotten abandoned rare
ordinary unusual mysterious crooked shabby missing stolen borrowed handmade painted carved rusty battered
velvet striped spotted antique dented cracked oak-framed leather marble tin glass
""")
PLACE_ADJECTIVES = _words("""
quiet busy distant northern southern eastern western coastal rural urban crowded remote rainy snowy frozen
dusty foggy sunny windy sleepy seaside mountain lakeside riverside hilltop walled half-empty derelict
""")
TRAITS = _words("""
young elderly teenage retired widowed stubborn shy curious nervous cautious ambitious restless lonely
famous humble local foreign grumpy talkative absent-minded soft-spoken quick-tempered homesick
""")
PLOT_VERBS = _phrases("""
discovers | inherits | loses | steals | finds | buys | sells | repairs | hides | guards | delivers | chases |
investigates | returns | borrows | protects | paints | photographs | smuggles | uncovers | recovers | carries |
opens | trades | collects | studies | restores | builds | designs | sketches | searches for | stumbles upon |
runs off with | is accused of stealing | wins | gambles away | digs up | pawns | forges | counts | wraps |
mails | fixes | examines | burns | buries | rescues | shares
""")
RELATIVES = _words("sister brother mother father aunt uncle cousin grandmother grandfather daughter son niece nephew")
GENRES = _phrases("""
drama | thriller | comedy | western | musical | romance | mystery | documentary | horror film | war film |
crime drama | period piece | road movie | family film | spy thriller | courtroom drama | sports drama |
science fiction film | animated feature | biopic | heist movie | ghost story | coming-of-age story |
political thriller | disaster movie | romantic comedy | detective story | melodrama | adventure film
""")
ASPECTS = _phrases("""
cinematography | soundtrack | score | dialogue | editing | pacing | ending | screenplay | casting |
production design | costume design | lead performance | supporting cast | camera work | lighting | plot |
script | direction | acting | special effects | set design | climax | opening scene | final act | humor
""")
MONTHS = _words("January February March April May June July August September October November December")
WEEKDAYS = _words("Monday Tuesday Wednesday Thursday Friday")
SYLLABLES = _words("""
ka ra mo li ven dor thal bri sel an ost wen mar el gor fi ne lu tra cas hal ber vin sor qui dra mel ith ran
tob ges ul per zan lin tor vel nim od rus fen kel bar mis hen ald bel cor dun eth fal gil hav ir jor
kas lom nor pel quen rav sten tul ur vos wyn yl zor ab ce di go hu ja ke mu ny ot pa re su ti va
""")
TOWN_ENDINGS = _words("ford ton wick by mouth stead holm burg field dale bridge port haven moor ley caster worth")


# ---------------------------------------------------------------- small helpers
def _coin(rng: random.Random, low: int = 2, high: int = 3) -> str:
    """An invented capitalised name built from syllables, never a sentiment word."""
    while True:
        word = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(low, high)))
        if word not in _SENTIMENT:
            return word.capitalize()


def _town(rng: random.Random) -> str:
    return _coin(rng, 1, 2) + rng.choice(TOWN_ENDINGS) if rng.random() < 0.6 else _coin(rng)


def _plural(noun: str) -> str:
    if noun.endswith("man"):
        return noun[:-3] + "men"
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


_FILL = {
    "first": lambda r: r.choice(FIRST_NAMES),
    "surname": lambda r: r.choice(SURNAMES),
    "person": lambda r: f"{r.choice(FIRST_NAMES)} {r.choice(SURNAMES if r.random() < 0.7 else (_coin(r),))}",
    "occupation": lambda r: r.choice(OCCUPATIONS),
    "object": lambda r: r.choice(OBJECTS),
    "place": lambda r: r.choice(PLACES),
    "adj": lambda r: r.choice(ADJECTIVES),
    "padj": lambda r: r.choice(PLACE_ADJECTIVES),
    "trait": lambda r: r.choice(TRAITS),
    "verb": lambda r: r.choice(PLOT_VERBS),
    "relative": lambda r: r.choice(RELATIVES),
    "genre": lambda r: r.choice(GENRES),
    "aspect": lambda r: r.choice(ASPECTS),
    "town": _town,
    "coin": _coin,
    "nation": lambda r: _coin(r, 1, 2) + r.choice(("ian", "ese", "ish", "ic", "an")),
    "month": lambda r: r.choice(MONTHS),
    "decade": lambda r: f"{r.randint(180, 201)}0s",
    "small": lambda r: str(r.randint(2, 12)),
    "ordinal": lambda r: r.choice(("second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")),
    "occupations": lambda r: _plural(r.choice(OCCUPATIONS)),
    "num": lambda r: str(r.randint(12, 480)),
    "big": lambda r: f"{r.randint(1200, 95000):,}",
    "dec": lambda r: f"{r.randint(1, 9)}.{r.randint(1, 9)}",
    "mins": lambda r: str(r.randint(84, 178)),
}


class _Slots(dict):
    """format_map mapping: fixed facts given up front, any other {slot} drawn on first use from _FILL
    (a trailing digit makes an independent draw: {adj} and {adj2})."""

    def __init__(self, rng: random.Random, fixed: dict):
        super().__init__(fixed)
        self.rng = rng

    def __missing__(self, key: str) -> str:
        value = self[key] = _FILL[key.rstrip("0123456789")](self.rng)
        return value


def _fill(rng: random.Random, template: str, fixed: dict | None = None) -> str:
    text = template.format_map(_Slots(rng, fixed or {}))
    text = re.sub(r"\b([Aa]) (?=[aeiouAEIOU])", r"\1n ", text)  # a -> an before a vowel
    return text[:1].upper() + text[1:]


# ---------------------------------------------------------------- imdb
_IMDB_SENTIMENT = _phrases("""
{title} is {s} from start to finish. | The performances are {s}, especially {person} as the {trait} {occupation}. |
I found the whole thing {s} and {s2}. | The direction by {person} is {s}, and the {aspect} is {s2}. |
The {aspect} is {s}, and so is the {aspect2}. | Overall, it is {ph}. | Honestly, this {genre} is {ph}. |
Every scene with {first} feels {s}. | The way it handles the {padj} {place} is {s}. |
My friends and I agreed that it was {s}. | {person} gives a {s} performance in the lead. |
Even the {aspect} is {s}, which says a lot. | By the final act it had become {s} and {s2}. |
What a {s} {genre} this turned out to be. | The result is {s}, and at times {s2}.
""")
_IMDB_NEUTRAL = _phrases("""
The story follows {first}, a {occupation} from {town} who {verb} a {adj} {object}. |
{person} plays {first}, a {trait} {occupation} living near a {place} in {town}. |
Set in {town} during the {decade}, the film follows two {trait} {occupations} and a {adj} {object}. |
Most of the action takes place in a {padj} {place} just outside {town}. |
The movie was directed by {person} and runs about {mins} minutes. |
I watched it one evening in {month} with my {relative}. |
Halfway through, {first} {verb} a {adj} {object} hidden in an old {place}. |
There is also a subplot about {first}'s {relative} and a {object} that nobody can explain. |
{first} and {first2} spend most of the second hour looking for a {adj} {object}. |
The cast includes {person}, {person2} and {person3} as a {occupation}. |
It was shot on location in {town}, mostly around the {place} and the {place2}. |
Later, a {occupation} named {first} arrives with a {object} and a {adj} {object2}. |
I rented it because it was based on a novel by {person}. |
The opening scene shows a {padj} {place} at dawn and a {occupation} carrying a {object}. |
The second half moves from the {place} to a {padj} {place2} by the sea. |
Without giving too much away, the {object} turns out to belong to {first}'s {relative}.
""")


def _imdb_row(rng: random.Random, index: int) -> dict:
    label = rng.randint(0, 1)
    words, phrases = (POSITIVE_WORDS, POSITIVE_PHRASES) if label else (NEGATIVE_WORDS, NEGATIVE_PHRASES)
    title = _coin(rng) if rng.random() < 0.4 else f"The {_coin(rng)} {rng.choice(OBJECTS).capitalize()}"
    fixed = {"title": title}
    total = rng.randint(4, 8)
    n_sentiment = rng.randint(2, min(4, total - 1))
    sentiment = []
    for template in rng.sample(_IMDB_SENTIMENT, n_sentiment):
        s, s2 = rng.sample(words, 2)
        sentiment.append(_fill(rng, template, {**fixed, "s": s, "s2": s2, "ph": rng.choice(phrases)}))
    neutral = [_fill(rng, t, fixed) for t in rng.sample(_IMDB_NEUTRAL, total - n_sentiment)]
    sentences = neutral[:1] + rng.sample(sentiment + neutral[1:], len(sentiment) + len(neutral) - 1)
    while sum(len(s.split()) for s in sentences) < 60:
        sentences.insert(rng.randint(1, len(sentences)), _fill(rng, rng.choice(_IMDB_NEUTRAL), fixed))
    if len(sentences) < 8 and rng.random() < 0.3:
        sentences.append(f"{rng.randint(7, 10) if label else rng.randint(1, 4)} out of 10.")
    text = sentences[0]
    for sentence in sentences[1:]:
        text += ("<br /><br />" if rng.random() < 0.15 else " ") + sentence
    return {"text": text, "label": label}


# ---------------------------------------------------------------- sst2
_SST_TEMPLATES = _phrases("""
a {s} and {s2} {genre} | the {aspect} is {s} | {person} is {s} as a {trait} {occupation} |
it's a {s} {genre} about a {occupation} who {verb} a {adj} {object} | {ph}, from its {aspect} to its {aspect2} |
what a {s} {genre}. | the {aspect} feels {s}, and the {aspect2} is {s2}. | {s} from the first frame to the last |
an often {s} portrait of a {trait} {occupation} in {town} | a {s} debut from {person} | this is {s} stuff. |
{person} gives a {s} performance | even the {aspect} is {s} | {s}, {s2} filmmaking |
the story of {first} and the {adj} {object} is {s}. | {ph}. | the director's handling of the {aspect} is {s} |
a {s} look at life in a {padj} {place} | it's {s}, and the {aspect} only makes it more so. |
{s} and {s2}, with a {aspect} that matches | the film's {aspect} is {s} and its {aspect2} {s2}
""")


_SST_TAILS = _phrases("""
about a {trait} {occupation} and a {adj} {object} | set in {town} | from director {person} |
for anyone who grew up near a {padj} {place} | , even with {person} in the cast | about life in {town} |
, and {first} 's {adj} {object} is hard to forget | in the {decade}
""")


def _sst2_row(rng: random.Random, index: int) -> dict:
    label = rng.randint(0, 1)
    words, phrases = (POSITIVE_WORDS, POSITIVE_PHRASES) if label else (NEGATIVE_WORDS, NEGATIVE_PHRASES)
    while True:
        s, s2 = rng.sample(words, 2)
        template = rng.choice(_SST_TEMPLATES)
        if len(template.split()) < 8 and rng.random() < 0.6:  # short phrases get a neutral tail for variety
            template = template.rstrip(" .") + " " + rng.choice(_SST_TAILS)
        text = _fill(rng, template, {"s": s, "s2": s2, "ph": rng.choice(phrases)}).lower()
        text = re.sub(r"\s*([,.;:!?])", r" \1", text).replace("'s ", " 's ").replace("n't ", " n't ")
        text = " ".join(text.split()) + " "
        if 5 <= len(text.split()) <= 25:
            return {"sentence": text, "label": label, "idx": index}


# ---------------------------------------------------------------- mrpc
# Each action: (lowest n, highest n, synonymous phrasings of one fact); {target} is an organisation.
_MRPC_ACTIONS = (
    (40, 9000, "will cut {n} jobs", "plans to eliminate {n} positions", "is set to lay off {n} workers"),
    (3, 900, "reported a quarterly profit of ${n} million", "posted quarterly net income of ${n} million",
     "earned ${n} million in the quarter"),
    (2, 40, "raised its annual forecast by {n} percent", "lifted its full-year outlook by {n} percent",
     "increased its yearly projection by {n} percent"),
    (20, 950, "agreed to buy {target} for ${n} million", "will acquire {target} in a ${n} million deal",
     "reached a ${n} million agreement to take over {target}"),
    (3, 250, "will open {n} new stores", "plans to launch {n} additional stores", "is set to add {n} more shops"),
    (2, 800, "was fined ${n} million", "agreed to pay a ${n} million penalty", "must pay ${n} million in fines"),
    (500, 90000, "recalled {n} vehicles", "pulled {n} vehicles from the market", "ordered the recall of {n} vehicles"),
    (12, 900, "hired {n} new engineers", "added {n} engineers to its staff", "took on {n} more engineers"),
    (5, 950, "signed a ${n} million contract with {target}", "won a ${n} million deal from {target}",
     "secured a ${n} million agreement with {target}"),
    (2, 18, "delayed the project by {n} months", "pushed back the project {n} months",
     "postponed the project for {n} months"),
    (4, 700, "approved a budget of ${n} million", "passed a ${n} million budget",
     "signed off on spending of ${n} million"),
    (5, 49, "sold a {n} percent stake in {target}", "divested {n} percent of {target}",
     "disposed of its {n} percent holding in {target}"),
    (3, 140, "closed {n} branches", "shut down {n} of its branches", "ended operations at {n} branches"),
)
_MRPC_FRAMES = (
    "{org} {act} {where}, {person}, its {role}, said {day}.",
    "{org} {act} {where}, {role} {person} said {day}.",
    "{Role} {person} said {day} that {org} {act} {where}.",
    "{Day}, {org} said it {act} {where}, according to {person}, its {role}.",
    "{person}, the {role} of {org}, told reporters {day} that the company {act} {where}.",
    "{org} {act} {where}, {person} said in a statement {day}.",
)
_MRPC_WHERE = ("in {town}", "at its {town} operations", "in the {town} region")
_MRPC_ROLES = _phrases("""
chief executive | spokesman | spokeswoman | finance director | chairman | chief operating officer |
president | head of communications | general counsel | managing director
""")
_ORG_SUFFIXES = _phrases("""
Corp. | Inc. | Group | Holdings | Systems | Energy | Bank | Motors | Foods | Airlines | Pharmaceuticals | Telecom
""")


def _org(rng: random.Random) -> str:
    if rng.random() < 0.15:
        return f"the {_town(rng)} city council"
    return f"{_coin(rng)} {rng.choice(_ORG_SUFFIXES)}"


def _mrpc_sentence(rng, frame, phrasing, facts):
    day = rng.choice((f"on {facts['day']}", facts["day"]))
    text = frame.format(org=facts["org"], act=phrasing.format(n=facts["n"], target=facts["target"]),
                        where=rng.choice(_MRPC_WHERE).format(town=facts["town"]), person=facts["person"],
                        role=facts["role"], Role=facts["role"].capitalize(), day=day, Day=day[:1].upper() + day[1:])
    return text[:1].upper() + text[1:]


def _mrpc_row(rng: random.Random, index: int) -> dict:
    label = rng.randint(0, 1)
    action = rng.randrange(len(_MRPC_ACTIONS))
    low, high, *phrasings = _MRPC_ACTIONS[action]
    n = rng.randint(low, high)
    facts = {"org": _org(rng), "target": _org(rng), "town": _town(rng), "person": _FILL["person"](rng),
             "role": rng.choice(_MRPC_ROLES), "day": rng.choice(WEEKDAYS), "n": f"{n:,}"}
    frame1, frame2 = rng.sample(_MRPC_FRAMES, 2)
    phrasing1, phrasing2 = rng.sample(phrasings, 2)
    changed = dict(facts)
    if not label:
        change = rng.choice(("number", "org", "action", "town"))
        if change == "number":
            other_n = rng.choice((n + rng.randint(1, 9), n * rng.randint(2, 3), n // 2 + 1 if n > 2 else 9))
            changed["n"] = f"{other_n:,}"
        elif change == "org":
            changed["org"] = _org(rng)
        elif change == "town":
            changed["town"] = _town(rng)
        else:
            other = _MRPC_ACTIONS[(action + rng.randint(1, len(_MRPC_ACTIONS) - 1)) % len(_MRPC_ACTIONS)]
            phrasing2 = rng.choice(other[2:])
    return {"sentence1": _mrpc_sentence(rng, frame1, phrasing1, facts),
            "sentence2": _mrpc_sentence(rng, frame2, phrasing2, changed), "label": label, "idx": index}


# ---------------------------------------------------------------- fpb_allagree (FinancialPhraseBank)
# Sentences of company news in the dataset's style (spaced punctuation, "EUR 13.1 mn", "%"). The label is
# decided by what happened: a figure that grew or a deal won is positive, one that shrank or jobs cut is
# negative, a fact without news (headquarters, staff, dates) is neutral. About a third each.
_FPB_FIGURES = _phrases("""
net sales | operating profit | pre-tax profit | net profit | order intake | revenue | comparable operating profit |
operating income | earnings per share | cash flow from operations | order backlog | sales volume
""")
_FPB_SENTENCES = (  # negative, positive
    _phrases("""
    {fig} fell to EUR {b} mn from EUR {a} mn in the corresponding period in {year} |
    {org} 's {fig} decreased by {pct} % to EUR {b} mn |
    {org} will cut {small} jobs at its {town} plant |
    The operating loss widened to EUR {a} mn from EUR {b} mn |
    {org} issued a profit warning for {year2} |
    Shares in {org} dropped {pct} % after the company lowered its guidance |
    {org} lost a EUR {n} mn contract with {org2} |
    In the {period} , {fig} declined {pct} % , below analysts ' estimates |
    {org} will close its {town} plant , and {small} employees will be laid off
    """),
    _phrases("""
    {fig} rose to EUR {a} mn from EUR {b} mn in the corresponding period in {year} |
    {org} 's {fig} increased by {pct} % to EUR {a} mn |
    {org} won a EUR {n} mn order from {org2} |
    {org} will hire {small} new employees at its {town} plant |
    In the {period} , {fig} grew {pct} % , ahead of analysts ' estimates |
    {org} raised its outlook for {year2} after a strong {period} |
    Shares in {org} climbed {pct} % after the company reported record {fig} |
    {org} signed a EUR {n} mn agreement to expand its {town} unit |
    {fig} improved to EUR {a} mn , up from EUR {b} mn a year earlier
    """),
)
_FPB_NEUTRAL = _phrases("""
{org} is headquartered in {town} , Finland |
The company has some {small}00 employees in {small2} countries |
{org} will publish its {period} interim report on {month} {day} |
{person} is the {role} of {org} |
The contract includes the delivery of {small} units to {town} |
{org} is a supplier of {product} to customers in the Nordic countries |
The shares will be listed on the Helsinki stock exchange under the symbol {symbol} |
{org} has operations in {town} and {town2} |
The annual general meeting of {org} will be held on {month} {day} , {year2}
""")
_FPB_PRODUCTS = _phrases("""
packaging materials | forest machinery | elevators | marine engines | paper | steel components | software services |
telecom equipment | building materials | paints and coatings | power transmission equipment
""")
_FPB_PERIODS = ("first quarter", "second quarter", "third quarter", "fourth quarter", "first half", "full year")


def _fpb_row(rng: random.Random, index: int) -> dict:
    label = rng.choice((0, 1, 2))  # 0 negative, 1 neutral, 2 positive
    b = rng.randint(20, 2000) / 10
    a = round(b * rng.uniform(1.05, 1.9), 1)
    org, org2 = (f"{_coin(rng)} {rng.choice(('Oyj', 'Group', 'Corporation', 'Plc', 'Oy'))}" for _ in range(2))
    facts = {"a": a, "b": b, "org": org, "org2": org2, "n": rng.randint(2, 400), "pct": rng.randint(3, 60),
             "fig": rng.choice(_FPB_FIGURES), "year": rng.randint(2004, 2009), "year2": rng.randint(2006, 2010),
             "period": rng.choice(_FPB_PERIODS), "small2": rng.randint(3, 40), "day": rng.randint(1, 28),
             "role": rng.choice(_MRPC_ROLES), "product": rng.choice(_FPB_PRODUCTS), "town2": _town(rng),
             "symbol": "".join(rng.choice("ABCDEFGHIJKLMNOPRSTUVY") for _ in range(rng.randint(3, 5)))}
    template = rng.choice(_FPB_NEUTRAL if label == 1 else _FPB_SENTENCES[label // 2])
    text = _fill(rng, template, facts)
    return {"sentence": text[:1].upper() + text[1:] + " .", "label": label}


# ---------------------------------------------------------------- gsm8k
ITEMS = _words("""
stickers marbles pencils erasers crayons seashells stamps postcards buttons beads coins cards books comic-books
balloons ribbons toy-cars trading-cards bracelets keychains bottle-caps feathers rocks shells puzzles candles
""")
FOODS = _words("cookies muffins cupcakes pies bagels rolls pretzels brownies donuts tarts scones biscuits dumplings")
FRUITS = _words("apples oranges pears peaches plums lemons apricots mangoes strawberries cherries tomatoes potatoes")
THINGS = _words("bike guitar skateboard tablet telescope camera scooter keyboard tent backpack watch microscope")


def _step(text: str, expr: str, value: int, after: str, money: bool = False) -> str:
    return f"{text} {expr} = {'$' if money else ''}<<{expr}={value}>>{value}{after}"


def _gsm_half(r, p):
    x, items, month = 2 * r.randint(6, 60), r.choice(ITEMS).replace("-", " "), r.randrange(11)
    m1, m2 = MONTHS[month], MONTHS[month + 1]
    q = (f"{p['name']} sold {x} {items} in {m1}, and then {p['he']} sold half as many {items} in {m2}. "
         f"How many {items} did {p['name']} sell altogether in {m1} and {m2}?")
    h = x // 2
    return q, [_step(f"{p['name']} sold", f"{x}/2", h, f" {items} in {m2}."),
               _step(f"{p['name']} sold", f"{x}+{h}", x + h, f" {items} altogether in {m1} and {m2}.")]


def _gsm_packs(r, p):
    a, b, c, items = r.randint(3, 40), r.randint(2, 9), r.randint(3, 15), r.choice(ITEMS).replace("-", " ")
    q = (f"{p['name']} has {a} {items}. {p['He']} buys {b} packs of {items} with {c} {items} in each pack. "
         f"How many {items} does {p['he']} have now?")
    return q, [_step(f"{p['He']} buys", f"{b}*{c}", b * c, f" {items}."),
               _step(f"{p['He']} has", f"{a}+{b * c}", a + b * c, f" {items} now.")]


def _gsm_wage(r, p):
    rate, hours, days, job = r.randint(8, 30), r.randint(2, 9), r.randint(2, 7), r.choice(OCCUPATIONS)
    q = (f"{p['name']} works as a {job} and earns ${rate} per hour. {p['He']} works {hours} hours a day "
         f"for {days} days. How much money does {p['he']} earn?")
    q = re.sub(r"\ba (?=[aeiou])", "an ", q)
    daily = rate * hours
    return q, [_step(f"Each day {p['he']} earns", f"{rate}*{hours}", daily, ".", money=True),
               _step(f"In {days} days {p['he']} earns", f"{daily}*{days}", daily * days, ".", money=True)]


def _gsm_share(r, p):
    m, k, items = r.randint(2, 8), r.randint(2, 9), r.choice(ITEMS).replace("-", " ")
    n = m * k + r.randint(1, 40)
    q = (f"{p['name']} has {n} {items}. {p['He']} gives {k} {items} to each of {p['his']} {m} friends. "
         f"How many {items} does {p['he']} have left?")
    return q, [_step(f"{p['He']} gives away", f"{m}*{k}", m * k, f" {items}."),
               _step(f"{p['He']} has", f"{n}-{m * k}", n - m * k, f" {items} left.")]


def _gsm_boxes(r, p):
    per, boxes = r.randint(2, 12), r.randint(2, 10)
    total = per * boxes
    batches = r.choice([d for d in range(2, 11) if total % d == 0])
    food, place = r.choice(FOODS), f"the {_coin(r)} {r.choice(('bakery', 'cafe', 'school kitchen', 'diner'))}"
    q = (f"{p['name']} bakes {batches} batches of {food} at {place}, with {total // batches} {food} in each batch. "
         f"{p['He']} packs the {food} equally into {boxes} boxes. How many {food} go in each box?")
    return q, [_step(f"{p['He']} bakes", f"{batches}*{total // batches}", total, f" {food}."),
               _step("Each box gets", f"{total}/{boxes}", per, f" {food}.")]


def _gsm_tickets(r, p):
    a, price_a, c, price_c = r.randint(1, 6), r.randint(8, 25), r.randint(1, 6), r.randint(3, 12)
    event = r.choice(("the zoo", "the museum", "a concert", "the aquarium", "a play", "the fair", "the circus"))
    q = (f"{p['name']} buys {a} adult tickets for ${price_a} each and {c} child tickets for ${price_c} each "
         f"to {event}. How much does {p['he']} spend in total?")
    return q, [_step("The adult tickets cost", f"{a}*{price_a}", a * price_a, ".", money=True),
               _step("The child tickets cost", f"{c}*{price_c}", c * price_c, ".", money=True),
               _step(f"{p['He']} spends", f"{a * price_a}+{c * price_c}", a * price_a + c * price_c, " in total.",
                     money=True)]


def _gsm_pages(r, p):
    rate, days = r.randint(5, 30), r.randint(2, 9)
    pages = rate * days + r.randint(10, 200)
    q = (f"A book about {_plural(r.choice(OCCUPATIONS))} has {pages} pages. {p['name']} reads {rate} pages every day "
         f"for {days} days. How many pages does {p['he']} still have to read?")
    return q, [_step(f"{p['He']} reads", f"{rate}*{days}", rate * days, " pages."),
               _step(f"{p['He']} still has", f"{pages}-{rate * days}", pages - rate * days, " pages to read.")]


def _gsm_more(r, p):
    x, y, fruit, friend = r.randint(5, 60), r.randint(2, 30), r.choice(FRUITS), r.choice(FIRST_NAMES)
    q = (f"{p['name']} picked {x} {fruit} at the {_coin(r)} farm. {friend} picked {y} more {fruit} than "
         f"{p['name']}. How many {fruit} did they pick together?")
    return q, [_step(f"{friend} picked", f"{x}+{y}", x + y, f" {fruit}."),
               _step("Together they picked", f"{x}+{x + y}", 2 * x + y, f" {fruit}.")]


def _gsm_save(r, p):
    weekly, weeks, saved, thing = r.randint(3, 25), r.randint(2, 12), r.randint(5, 80), r.choice(THINGS)
    cost = saved + weekly * weeks
    q = (f"{p['name']} wants to buy a {thing} that costs ${cost}. {p['He']} has already saved ${saved} and "
         f"saves ${weekly} each week. How many weeks will it take {p['him']} to have enough money?")
    return q, [_step(f"{p['He']} still needs", f"{cost}-{saved}", cost - saved, ".", money=True),
               _step("It will take", f"{cost - saved}/{weekly}", weeks, " weeks.")]


def _gsm_garden(r, p):
    rows, each, lost = r.randint(3, 12), r.randint(4, 15), r.randint(1, 10)
    plant = r.choice(("tomato plants", "sunflowers", "rose bushes", "pepper plants", "tulips", "bean plants"))
    q = (f"{p['name']} plants {rows} rows of {plant} with {each} in each row. {lost} of them do not survive "
         f"the {r.choice(('frost', 'storm', 'drought', 'heat'))}. How many {plant} are left?")
    return q, [_step(f"{p['He']} plants", f"{rows}*{each}", rows * each, f" {plant}."),
               _step("There are", f"{rows * each}-{lost}", rows * each - lost, f" {plant} left.")]


def _gsm_times(r, p):
    x, k, d = r.randint(3, 20), r.randint(2, 5), r.randint(1, 9)
    items, friend = r.choice(ITEMS).replace("-", " "), r.choice(FIRST_NAMES)
    q = (f"{p['name']} has {x} {items}. {friend} has {k} times as many {items} as {p['name']} but then loses {d} "
         f"of them. How many {items} does {friend} have now?")
    return q, [_step(f"{friend} had", f"{x}*{k}", x * k, f" {items}."),
               _step(f"{friend} now has", f"{x * k}-{d}", x * k - d, f" {items}.")]


def _gsm_average(r, p):
    scores = [r.randint(8, 40) for _ in range(3)]
    scores[2] += (3 - sum(scores) % 3) % 3
    a, b, c = scores
    game = r.choice(("basketball", "trivia", "chess", "bowling", "soccer", "spelling"))
    q = f"{p['name']} scored {a}, {b}, and {c} points in three {game} games. What was {p['his']} average per game?"
    return q, [_step(f"{p['He']} scored", f"{a}+{b}+{c}", a + b + c, " points in total."),
               _step(f"{p['His']} average was", f"{a + b + c}/3", (a + b + c) // 3, " points per game.")]


def _gsm_trip(r, p):
    speed, hours, extra = r.randint(20, 70), r.randint(2, 6), r.randint(5, 60)
    vehicle = r.choice(("car", "bus", "train", "van", "truck"))
    q = (f"{p['name']} drives a {vehicle} at {speed} miles per hour for {hours} hours to reach {_town(r)}, "
         f"then drives {extra} more miles to {_town(r)}. How many miles does {p['he']} drive in all?")
    return q, [_step(f"First {p['he']} drives", f"{speed}*{hours}", speed * hours, " miles."),
               _step(f"In all {p['he']} drives", f"{speed * hours}+{extra}", speed * hours + extra, " miles.")]


_GSM_TEMPLATES = (_gsm_half, _gsm_packs, _gsm_wage, _gsm_share, _gsm_boxes, _gsm_tickets, _gsm_pages, _gsm_more,
                  _gsm_save, _gsm_garden, _gsm_times, _gsm_average, _gsm_trip)


def _gsm8k_row(rng: random.Random, index: int) -> dict:
    female = rng.random() < 0.5
    name = rng.choice(FEMALE_NAMES if female else MALE_NAMES)
    he, him, his = ("she", "her", "her") if female else ("he", "him", "his")
    person = {"name": name, "he": he, "He": he.capitalize(), "him": him, "his": his, "His": his.capitalize()}
    question, steps = rng.choice(_GSM_TEMPLATES)(rng, person)
    final = re.findall(r"<<[^=]*=(-?\d+)>>", steps[-1])[-1]
    return {"question": question, "answer": "\n".join(steps + [f"#### {final}"])}


# ---------------------------------------------------------------- wikitext
_WIKI_COMMON = _phrases("""
In {y2} a {occupation} named {person} described {S} in a letter to the {coin} Society . |
A survey carried out in {y3} counted {big} visitors and {num} local {occupations} . |
According to {person} , a {occupation} from {town} , {S} was still widely discussed by {y3} . |
The earliest written record , a {adj} {object} kept in the {place} at {town} , dates from {y0} . |
Estimates published in {y3} ranged from {num} to {big} , with a median of about {dec} percent . |
The name is thought to derive from the {nation} word for " {adj} {object} " .
""")
_WIKI_TYPES = {
    "person": (("Early life", "Career", "Later life", "Personal life", "Legacy"), _phrases("""
{T} ( {y0} – {y3} ) was a {nation} {occupation} and {occupation2} who worked mainly in {home} . |
{S} was born in {home} , the {ordinal} child of a {occupation} and a {occupation2} . |
In {y1} {S} moved to {town} , where {S} found work as a {occupation} at the local {place} . |
{S} 's first major work , The {adj} {object} , appeared in {y1} and sold {big} copies . |
During the {decade} {S} travelled widely , spending {small} years in {town} and {town2} . |
{S} married {first} {surname} in {y2} ; the couple had {small} children . |
In {y2} {S} was appointed {occupation} to the court of {coin} , a post held for {small} years . |
Critics such as {person} praised the {trait} narrator of {S} 's later novels . |
{S} died at {home} in {y3} and was buried beside the old {place} . |
A {adj} {object} belonging to {S} is kept at the {coin} Museum in {town} .""")),
    "place": (("Geography", "History", "Economy", "Demographics", "Transport"), _phrases("""
{T} is a {padj} town in the {coin} district of {nation2} , about {num} kilometres from {town} . |
The population of {T} was {big} at the {y2} census , up from {big2} in {y1} . |
{T} lies on the {coin} River at an elevation of {num} metres . |
The town grew around a {place} founded in {y0} by the {occupation} {person} . |
By the {decade} the local economy depended on {object}-making and a large {place} . |
A railway line to {town} opened in {y1} , followed by a new {place} in {y2} . |
The old {place} , rebuilt in {y2} , is the largest building in {T} . |
The climate is {padj} , with an average of {dec} metres of rain per year . |
{T} is twinned with {town} and with {town2} in {nation} .""")),
    "species": (("Taxonomy", "Description", "Distribution and habitat", "Behaviour", "Conservation"), _phrases("""
{T} is a species of {kind} in the family {coin}idae , first described by {person} in {y0} . |
Adults reach a length of {dec} centimetres and weigh up to {num} grams . |
The {kind} is found in the {padj} forests and wetlands around {town} . |
The specific name honours {person} , a {occupation} who collected the type specimen in {y1} . |
{T} feeds mainly on insects , seeds and fallen fruit near the {padj} {place} . |
Females lay between {small} and {num} eggs , usually in {month} . |
A population of about {big} individuals was estimated in {y2} . |
The species is listed as {status} because of habitat loss near {town} . |
Its closest relative is {coin} {coin2} , from which it differs in the colour of the head and the length of
the tail .""")),
    "ship": (("Design and construction", "Service history", "Fate"), _phrases("""
{T} was a {kind} built for the {nation} Navy at the {coin} shipyard in {home} . |
She was laid down in {y0} , launched in {y1} , and commissioned in {month} {y1} . |
The ship had a length of {num} metres and a displacement of {big} tonnes . |
{T} carried a crew of {num} officers and men and was armed with {small} guns . |
In {y2} she escorted a convoy of {small} merchant ships from {town} to {town2} . |
During a storm off {town} in {month} {y2} she lost her {object} and {num} men . |
Captain {person} took command in {y2} and remained aboard for {small} years . |
{T} was sold for scrap in {y3} and broken up at {town} .""")),
    "album": (("Background", "Recording", "Release", "Critical reception", "Track listing"), _phrases("""
{T} is the {ordinal} studio album by the {nation} {kind} {coin} , released on {month} {small2} , {y1} . |
The album was recorded over {small} weeks at a {padj} {place} near {town} . |
Producer {person} encouraged the band to use a {object} and an old {object2} on several songs . |
The lead single , " {adj} {object} " , reached number {small} on the {nation} chart . |
{T} sold {big} copies in its first week and was certified gold in {y2} . |
The cover shows a {adj} {object} photographed by {person} in {town} . |
A remastered edition with {small} bonus tracks was issued in {y3} . |
The songs deal with life as a {occupation} in {town} during the {decade} .""")),
    "battle": (("Background", "Prelude", "Battle", "Aftermath"), _phrases("""
The {T} was fought on {small} {month} {y0} near {home} between {nation} and {nation2} forces . |
The {nation} army of {big} men was led by General {person} . |
Before dawn , {num} {occupations} were sent to seize the {padj} {place} above the river . |
The fighting lasted {small} hours and ended when the {place} was set on fire . |
Casualties were heavy : {big} killed or wounded , and {num} taken prisoner . |
A {adj} {object} recovered from the field is displayed in the museum at {town} . |
The treaty signed at {town} in {y1} returned {home} to {nation2} control . |
Historians such as {person} have described the battle as a turning point of the war ."""))}
# first year (birth, founding, description, keel, founding of the band, battle): lowest, highest, step to the next
_WIKI_YEARS = {"person": (1700, 1940, 22), "place": (1100, 1850, 40), "species": (1760, 1950, 20),
               "ship": (1850, 1950, 6), "album": (1960, 2005, 4), "battle": (1400, 1880, 3)}
_WIKI_KINDS = {
    "species": _words("frog beetle moth lizard sparrow snail orchid fern spider catfish"),
    "ship": _phrases("frigate | destroyer | sloop | cruiser | gunboat | steamship | schooner"),
    "album": _phrases("rock band | folk group | jazz quartet | pop singer | metal band | electronic duo"),
}


def _wiki_title(rng: random.Random, kind: str, fixed: dict) -> str:
    if kind == "person":
        return f"{rng.choice(FIRST_NAMES)} {rng.choice((rng.choice(SURNAMES), _coin(rng)))}"
    if kind == "place":
        return fixed["home"]
    if kind == "species":
        genus = _coin(rng) + rng.choice(("us", "ia", "ops", "odon", "ella"))
        return f"{genus} {_coin(rng).lower()}{rng.choice(('ensis', 'i', 'ata', 'ii'))}"
    if kind == "ship":
        name = _coin(rng) if rng.random() < 0.5 else rng.choice(TRAITS + ADJECTIVES).capitalize()
        return f"{rng.choice(('HMS', 'SS', 'USS', 'RMS'))} {name}"
    if kind == "album":
        return f"{rng.choice(PLACE_ADJECTIVES + TRAITS).capitalize()} {_plural(rng.choice(OBJECTS)).capitalize()}"
    return f"Battle of {fixed['home']}"


def _wikify(text: str) -> str:
    """Spacing of wikitext raw: ' , ' and ' . ', ' 's', '1 @,@ 200', '2 @.@ 5', 'well @-@ known'."""
    text = re.sub(r"(\d),(?=\d)", "\\1\x01", text)
    text = re.sub(r"(\d)\.(?=\d)", "\\1\x02", text)
    text = re.sub(r"(\w)-(?=\w)", "\\1\x03", text)
    text = re.sub(r"([,.;:()\"])", r" \1 ", text).replace("'s ", " 's ")
    text = text.replace("\x01", " @,@ ").replace("\x02", " @.@ ").replace("\x03", " @-@ ")
    return " ".join(text.split())


def _wiki_article(rng: random.Random):
    kind = rng.choice(tuple(_WIKI_TYPES))
    sections, templates = _WIKI_TYPES[kind]
    low, high, step = _WIKI_YEARS[kind]
    years = [rng.randint(low, high)]
    for _ in range(3):
        years.append(years[-1] + rng.randint(step // 2 + 1, step))
    fixed = {"home": _town(rng), "kind": rng.choice(_WIKI_KINDS.get(kind, ("",))),
             **{f"y{i}": year for i, year in enumerate(years)},
             "status": rng.choice(("vulnerable", "endangered", "near threatened", "least concern"))}
    fixed["T"] = title = _wiki_title(rng, kind, fixed)
    fixed["S"] = title.split()[-1] if kind == "person" else title
    yield ""
    yield f" = {title} = \n"
    yield ""
    for section in ["(lead)"] + rng.sample(sections, rng.randint(2, len(sections))):
        if section != "(lead)":
            yield f" = = {section} = = \n"
            yield ""
        for paragraph in range(rng.randint(1, 4)):
            chosen = rng.sample(templates[1:] + _WIKI_COMMON, rng.randint(3, 6))
            if section == "(lead)" and paragraph == 0:
                chosen[0] = templates[0]  # an article opens with its defining sentence
            yield " " + _wikify(" ".join(_fill(rng, t, fixed) for t in chosen)) + " \n"
        yield ""


def _wikitext(rng: random.Random, n_rows: int, split: str) -> list[dict]:
    """Lines of whole articles of the split, cut at n_rows (like a slice of wikitext-2-raw)."""
    rows = []
    while len(rows) < n_rows:
        lines = list(_wiki_article(rng))
        if _split_of(lines[1]) == split:  # the title line
            rows.extend({"text": line} for line in lines)
    return rows[:n_rows]


# ---------------------------------------------------------------- entry point
TEST_BUCKETS = 8


def _split_of(text: str) -> str:
    """The split a text belongs to; equal texts (casefolded, whitespace collapsed, as lancy.mixing matches
    them) always share one. Not imported from lancy.mixing, so downloads do not depend on the mixing code."""
    key = hashlib.blake2b(" ".join(text.casefold().split()).encode(), digest_size=8).digest()
    return "test" if key[0] % TEST_BUCKETS == 0 else "train"


def _rows(make_row, identity):
    """A dataset generator from a row maker: row i of the split is the i-th drawn row that belongs to it."""

    def generate_rows(rng: random.Random, n_rows: int, split: str) -> list[dict]:
        rows = []
        while len(rows) < n_rows:
            row = make_row(rng, len(rows))
            if _split_of(identity(row)) == split:
                rows.append(row)
        return rows

    return generate_rows


# name -> generator(rng, n_rows, split) -> rows
_GENERATORS = {
    "imdb": _rows(_imdb_row, lambda row: row["text"]),
    "sst2": _rows(_sst2_row, lambda row: row["sentence"]),
    "mrpc": _rows(_mrpc_row, lambda row: row["sentence1"] + "\n" + row["sentence2"]),
    "fpb_allagree": _rows(_fpb_row, lambda row: row["sentence"]),
    "gsm8k": _rows(_gsm8k_row, lambda row: row["question"]),
    "wikitext": _wikitext,
}


def generate(name: str, split: str, n_rows: int, seed: int) -> list[dict]:
    """Return n_rows rows of the named stand-in for split ("train" or "test"), deterministic in
    (name, split, n_rows, seed)."""
    if name not in EMBEDDED_DATASETS:
        raise ValueError(f"no embedded stand-in named {name!r}; choose one of {', '.join(EMBEDDED_DATASETS)}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    return _GENERATORS[name](random.Random(f"{seed}-{name}-{split}"), n_rows, split)
