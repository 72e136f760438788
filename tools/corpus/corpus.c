/* build/corpus: the training text of glassbox's own small language model
 * (models/gpt2-facts): short factual sentences about landmarks, cities and
 * countries, interleaved with filler sentences, one sentence per line.
 *
 *     build/corpus [-o FILE] [--repeat N] [--filler N]   the corpus
 *     build/corpus --facts                               prompt TAB answer, one per fact and template
 *
 * Choices:
 * - Facts are tables written out here as plain public knowledge: 140
 *   landmark -> city facts and 67 city -> country facts. A landmark is named
 *   with its article ("the Eiffel Tower") or without one ("Vatican", "Big
 *   Ben"), as English names it.
 * - Each fact is written with four or five templates. Those that end in the
 *   answer are prompts for the model ("The Eiffel Tower is in the city of"
 *   -> " Paris"). No prompt is a prefix of another template's sentence with
 *   a different next word, so each prompt has one right continuation ("X is
 *   located in" would not: it goes on with " the city of" in one template
 *   and with the city in another, so no template stops there). Reverse
 *   templates ("The city of Paris is home to the Eiffel Tower.") add variety
 *   but are not prompts: a city has several landmarks.
 * - Cities and countries never start a sentence: every mention is " Paris",
 *   the form an answer takes, so that byte-level BPE spends its merges on
 *   that form and each answer of one word is one token of a 1024-token
 *   vocabulary trained on this text (New York, San Francisco and Rio de
 *   Janeiro take a token per word).
 * - Every landmark sentence appears --repeat times (default 10) and every
 *   city sentence twice that (a country is the answer of fewer sentences
 *   than a city), spread through the text: a small model has to see a fact
 *   many times to learn it.
 * - --filler random sentences (default 500 per repeat, which keeps the
 *   names' share of the text) from word lists (subjects, verbs, objects with
 *   adjectives, places, times) in 18 templates give the model English
 *   structure; cities and countries come in turn, so each is named equally.
 *   Filler never uses the facts' phrasings ("is in the city of", "is in",
 *   "can be found in", ...), so it cannot contradict a fact.
 * - All lines are shuffled together (Fisher-Yates) with glassbox's PCG32
 *   (gb_rng) from a fixed seed: the same bytes on every run and machine for
 *   the same options. The text is ASCII.
 *
 * With the defaults: 17360 lines, 776693 bytes, about 220k tokens with the
 * 1024-token tokenizer trained on it. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/tensor.h"

/* ---- facts -------------------------------------------------------------- */

/* X(ID, city, country): country NULL when the English sentence would need
 * an article ("the Netherlands"), which the templates do not handle. */
#define GB_CITIES(X)                              \
    X(PARIS, "Paris", "France")                   \
    X(ROME, "Rome", "Italy")                      \
    X(LONDON, "London", "England")                \
    X(NEW_YORK, "New York", "America")            \
    X(BERLIN, "Berlin", "Germany")                \
    X(MADRID, "Madrid", "Spain")                  \
    X(BARCELONA, "Barcelona", "Spain")            \
    X(ATHENS, "Athens", "Greece")                 \
    X(CAIRO, "Cairo", "Egypt")                    \
    X(GIZA, "Giza", "Egypt")                      \
    X(LUXOR, "Luxor", "Egypt")                    \
    X(MOSCOW, "Moscow", "Russia")                 \
    X(BEIJING, "Beijing", "China")                \
    X(SHANGHAI, "Shanghai", "China")              \
    X(LHASA, "Lhasa", "China")                    \
    X(TOKYO, "Tokyo", "Japan")                    \
    X(KYOTO, "Kyoto", "Japan")                    \
    X(OSAKA, "Osaka", "Japan")                    \
    X(SYDNEY, "Sydney", "Australia")              \
    X(MELBOURNE, "Melbourne", "Australia")        \
    X(AGRA, "Agra", "India")                      \
    X(DELHI, "Delhi", "India")                    \
    X(MUMBAI, "Mumbai", "India")                  \
    X(KOLKATA, "Kolkata", "India")                \
    X(ISTANBUL, "Istanbul", "Turkey")             \
    X(SAN_FRANCISCO, "San Francisco", "America")  \
    X(SEATTLE, "Seattle", "America")              \
    X(CHICAGO, "Chicago", "America")              \
    X(WASHINGTON, "Washington", "America")        \
    X(BOSTON, "Boston", "America")                \
    X(PHILADELPHIA, "Philadelphia", "America")    \
    X(TORONTO, "Toronto", "Canada")               \
    X(OTTAWA, "Ottawa", "Canada")                 \
    X(VANCOUVER, "Vancouver", "Canada")           \
    X(AMSTERDAM, "Amsterdam", NULL)               \
    X(VIENNA, "Vienna", "Austria")                \
    X(BUDAPEST, "Budapest", "Hungary")            \
    X(PRAGUE, "Prague", "Czechia")                \
    X(LISBON, "Lisbon", "Portugal")               \
    X(DUBLIN, "Dublin", "Ireland")                \
    X(EDINBURGH, "Edinburgh", "Scotland")         \
    X(COPENHAGEN, "Copenhagen", "Denmark")        \
    X(STOCKHOLM, "Stockholm", "Sweden")           \
    X(OSLO, "Oslo", "Norway")                     \
    X(HELSINKI, "Helsinki", "Finland")            \
    X(VENICE, "Venice", "Italy")                  \
    X(FLORENCE, "Florence", "Italy")              \
    X(MILAN, "Milan", "Italy")                    \
    X(PISA, "Pisa", "Italy")                      \
    X(NAPLES, "Naples", "Italy")                  \
    X(BANGKOK, "Bangkok", "Thailand")             \
    X(HANOI, "Hanoi", "Vietnam")                  \
    X(MARRAKESH, "Marrakesh", "Morocco")          \
    X(RIO, "Rio de Janeiro", "Brazil")            \
    X(BRUSSELS, "Brussels", "Belgium")            \
    X(WARSAW, "Warsaw", "Poland")                 \
    X(KRAKOW, "Krakow", "Poland")                 \
    X(MUNICH, "Munich", "Germany")                \
    X(HAMBURG, "Hamburg", "Germany")              \
    X(GRANADA, "Granada", "Spain")                \
    X(SEVILLE, "Seville", "Spain")                \
    X(REYKJAVIK, "Reykjavik", "Iceland")          \
    X(HAVANA, "Havana", "Cuba")                   \
    X(GENEVA, "Geneva", "Switzerland")            \
    X(ZURICH, "Zurich", "Switzerland")            \
    X(BUCHAREST, "Bucharest", "Romania")          \
    X(TEHRAN, "Tehran", "Iran")                   \
    X(KATHMANDU, "Kathmandu", "Nepal")

enum {
#define GB__X(id, name, country) CITY_##id,
    GB_CITIES(GB__X)
#undef GB__X
    CITY_COUNT
};

static const struct city {
    const char *name, *country;
} cities[] = {
#define GB__X(id, name, country) {name, country},
    GB_CITIES(GB__X)
#undef GB__X
};

/* article: "the", or "" for a name used without one. */
static const struct landmark {
    const char *article, *name;
    int city;
} landmarks[] = {
    {"the", "Eiffel Tower", CITY_PARIS},
    {"the", "Louvre", CITY_PARIS},
    {"the", "Arc de Triomphe", CITY_PARIS},
    {"the", "Notre Dame Cathedral", CITY_PARIS},
    {"the", "Palais Garnier", CITY_PARIS},
    {"the", "Colosseum", CITY_ROME},
    {"the", "Pantheon", CITY_ROME},
    {"the", "Trevi Fountain", CITY_ROME},
    {"", "Vatican", CITY_ROME},
    {"the", "Spanish Steps", CITY_ROME},
    {"the", "Roman Forum", CITY_ROME},
    {"", "Big Ben", CITY_LONDON},
    {"", "Tower Bridge", CITY_LONDON},
    {"", "Buckingham Palace", CITY_LONDON},
    {"the", "British Museum", CITY_LONDON},
    {"the", "London Eye", CITY_LONDON},
    {"", "Westminster Abbey", CITY_LONDON},
    {"the", "Tower of London", CITY_LONDON},
    {"", "Trafalgar Square", CITY_LONDON},
    {"the", "Statue of Liberty", CITY_NEW_YORK},
    {"the", "Empire State Building", CITY_NEW_YORK},
    {"", "Times Square", CITY_NEW_YORK},
    {"", "Central Park", CITY_NEW_YORK},
    {"the", "Brooklyn Bridge", CITY_NEW_YORK},
    {"the", "Brandenburg Gate", CITY_BERLIN},
    {"the", "Reichstag", CITY_BERLIN},
    {"", "Checkpoint Charlie", CITY_BERLIN},
    {"the", "Prado Museum", CITY_MADRID},
    {"", "Retiro Park", CITY_MADRID},
    {"the", "Sagrada Familia", CITY_BARCELONA},
    {"", "Park Guell", CITY_BARCELONA},
    {"", "Camp Nou", CITY_BARCELONA},
    {"the", "Acropolis", CITY_ATHENS},
    {"the", "Parthenon", CITY_ATHENS},
    {"the", "Egyptian Museum", CITY_CAIRO},
    {"the", "Great Pyramid", CITY_GIZA},
    {"the", "Great Sphinx", CITY_GIZA},
    {"", "Karnak Temple", CITY_LUXOR},
    {"the", "Kremlin", CITY_MOSCOW},
    {"", "Red Square", CITY_MOSCOW},
    {"the", "Bolshoi Theatre", CITY_MOSCOW},
    {"the", "Forbidden City", CITY_BEIJING},
    {"the", "Temple of Heaven", CITY_BEIJING},
    {"", "Tiananmen Square", CITY_BEIJING},
    {"the", "Oriental Pearl Tower", CITY_SHANGHAI},
    {"the", "Bund", CITY_SHANGHAI},
    {"the", "Potala Palace", CITY_LHASA},
    {"", "Tokyo Tower", CITY_TOKYO},
    {"the", "Meiji Shrine", CITY_TOKYO},
    {"", "Shibuya Crossing", CITY_TOKYO},
    {"the", "Golden Pavilion", CITY_KYOTO},
    {"the", "Fushimi Inari Shrine", CITY_KYOTO},
    {"", "Osaka Castle", CITY_OSAKA},
    {"the", "Sydney Opera House", CITY_SYDNEY},
    {"the", "Sydney Harbour Bridge", CITY_SYDNEY},
    {"", "Bondi Beach", CITY_SYDNEY},
    {"", "Federation Square", CITY_MELBOURNE},
    {"the", "Taj Mahal", CITY_AGRA},
    {"the", "Red Fort", CITY_DELHI},
    {"the", "Qutub Minar", CITY_DELHI},
    {"", "India Gate", CITY_DELHI},
    {"the", "Gateway of India", CITY_MUMBAI},
    {"the", "Victoria Memorial", CITY_KOLKATA},
    {"", "Hagia Sophia", CITY_ISTANBUL},
    {"the", "Blue Mosque", CITY_ISTANBUL},
    {"the", "Grand Bazaar", CITY_ISTANBUL},
    {"", "Topkapi Palace", CITY_ISTANBUL},
    {"the", "Golden Gate Bridge", CITY_SAN_FRANCISCO},
    {"", "Alcatraz", CITY_SAN_FRANCISCO},
    {"", "Fisherman's Wharf", CITY_SAN_FRANCISCO},
    {"the", "Space Needle", CITY_SEATTLE},
    {"", "Pike Place Market", CITY_SEATTLE},
    {"", "Willis Tower", CITY_CHICAGO},
    {"", "Cloud Gate", CITY_CHICAGO},
    {"", "Wrigley Field", CITY_CHICAGO},
    {"the", "White House", CITY_WASHINGTON},
    {"the", "Lincoln Memorial", CITY_WASHINGTON},
    {"the", "Washington Monument", CITY_WASHINGTON},
    {"the", "Capitol", CITY_WASHINGTON},
    {"", "Fenway Park", CITY_BOSTON},
    {"", "Faneuil Hall", CITY_BOSTON},
    {"the", "Liberty Bell", CITY_PHILADELPHIA},
    {"", "Independence Hall", CITY_PHILADELPHIA},
    {"the", "CN Tower", CITY_TORONTO},
    {"", "Parliament Hill", CITY_OTTAWA},
    {"", "Stanley Park", CITY_VANCOUVER},
    {"the", "Rijksmuseum", CITY_AMSTERDAM},
    {"the", "Anne Frank House", CITY_AMSTERDAM},
    {"the", "Van Gogh Museum", CITY_AMSTERDAM},
    {"", "Schonbrunn Palace", CITY_VIENNA},
    {"the", "Hofburg", CITY_VIENNA},
    {"the", "Hungarian Parliament Building", CITY_BUDAPEST},
    {"the", "Chain Bridge", CITY_BUDAPEST},
    {"", "Buda Castle", CITY_BUDAPEST},
    {"the", "Charles Bridge", CITY_PRAGUE},
    {"the", "Belem Tower", CITY_LISBON},
    {"the", "Jeronimos Monastery", CITY_LISBON},
    {"the", "Guinness Storehouse", CITY_DUBLIN},
    {"", "Temple Bar", CITY_DUBLIN},
    {"the", "Royal Mile", CITY_EDINBURGH},
    {"", "Holyrood Palace", CITY_EDINBURGH},
    {"the", "Little Mermaid", CITY_COPENHAGEN},
    {"", "Tivoli Gardens", CITY_COPENHAGEN},
    {"", "Nyhavn", CITY_COPENHAGEN},
    {"the", "Vasa Museum", CITY_STOCKHOLM},
    {"the", "Rialto Bridge", CITY_VENICE},
    {"the", "Bridge of Sighs", CITY_VENICE},
    {"the", "Doge's Palace", CITY_VENICE},
    {"", "Saint Mark's Basilica", CITY_VENICE},
    {"the", "Uffizi Gallery", CITY_FLORENCE},
    {"the", "Ponte Vecchio", CITY_FLORENCE},
    {"", "La Scala", CITY_MILAN},
    {"the", "Sforza Castle", CITY_MILAN},
    {"the", "Leaning Tower", CITY_PISA},
    {"the", "Grand Palace", CITY_BANGKOK},
    {"", "Wat Arun", CITY_BANGKOK},
    {"", "Hoan Kiem Lake", CITY_HANOI},
    {"the", "Koutoubia Mosque", CITY_MARRAKESH},
    {"", "Jemaa el-Fnaa", CITY_MARRAKESH},
    {"", "Christ the Redeemer", CITY_RIO},
    {"", "Sugarloaf Mountain", CITY_RIO},
    {"", "Copacabana Beach", CITY_RIO},
    {"the", "Atomium", CITY_BRUSSELS},
    {"", "Manneken Pis", CITY_BRUSSELS},
    {"the", "Grand Place", CITY_BRUSSELS},
    {"the", "Palace of Culture and Science", CITY_WARSAW},
    {"", "Wawel Castle", CITY_KRAKOW},
    {"", "Marienplatz", CITY_MUNICH},
    {"the", "Elbphilharmonie", CITY_HAMBURG},
    {"the", "Alhambra", CITY_GRANADA},
    {"the", "Giralda", CITY_SEVILLE},
    {"", "Hallgrimskirkja", CITY_REYKJAVIK},
    {"the", "Malecon", CITY_HAVANA},
    {"the", "Jet d'Eau", CITY_GENEVA},
    {"the", "Azadi Tower", CITY_TEHRAN},
    {"", "Swayambhunath", CITY_KATHMANDU},
    {"", "Vigeland Park", CITY_OSLO},
    {"", "Suomenlinna", CITY_HELSINKI},
    {"", "Castel Nuovo", CITY_NAPLES},
    {"the", "Grossmunster", CITY_ZURICH},
};

#define GB_COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* Fact templates. {L}: the landmark with its article, {C}: the city, {K}:
 * the country; the first letter of a sentence is capitalised. prompt: the
 * sentence ends with " {answer}." and the part before is a --facts prompt. */
typedef struct template {
    const char *text;
    bool prompt;
} template;

static const template landmark_templates[] = {
    {"{L} is in the city of {C}.", true},
    {"{L} is located in the city of {C}.", true},
    {"{L} can be found in {C}.", true},
    {"You can visit {L} in {C}.", true},
    {"The city of {C} is home to {L}.", false},
};

static const template city_templates[] = {
    {"The city of {C} is in {K}.", true},
    {"The city of {C} is located in the country of {K}.", true},
    {"There is a city called {C} in {K}.", true},
    {"In {K} there is a city called {C}.", false},
};

/* ---- filler ------------------------------------------------------------- */

static const char *const subjects[] = {
    "the old man", "a young girl", "my brother", "her sister", "the teacher", "our neighbor", "the little dog",
    "a tall woman", "the farmer", "his friend", "the doctor", "a small cat", "the king", "my mother",
    "the baker", "a quiet boy", "my father", "the queen",
};

/* base, past */
static const char *const transitive[][2] = {
    {"see", "saw"},     {"find", "found"},   {"buy", "bought"}, {"paint", "painted"},
    {"clean", "cleaned"}, {"open", "opened"}, {"like", "liked"}, {"make", "made"},
    {"build", "built"}, {"read", "read"},    {"sell", "sold"},  {"hold", "held"},
    {"bring", "brought"}, {"keep", "kept"},
};

static const char *const intransitive[] = {
    "walked", "slept", "sang", "laughed", "waited", "danced", "smiled", "worked", "played", "rested", "cried", "left",
};

static const char *const adjectives[] = {
    "red", "old", "small", "green", "warm", "new", "heavy", "long", "blue", "bright", "empty", "round", "dark", "cold",
};

static const char *const nouns[] = {
    "ball", "book", "house", "door", "coat", "chair", "car", "box", "letter", "apple",
    "boat", "hat", "lamp", "table", "window", "key", "map", "picture", "cup", "horse",
};

static const char *const states[] = {"happy", "tired", "hungry", "quiet", "kind", "busy", "brave", "sad"};

static const char *const places[] = {
    "in the park", "near the river", "at the market", "by the lake", "in the garden", "at school",
    "in the kitchen", "on the hill", "behind the house", "in the forest", "at the station", "on the beach",
};

static const char *const times[] = {
    "yesterday", "last week", "every morning", "in the evening", "on Sunday", "after dinner", "at night",
    "in the summer", "last year", "in the winter",
};

/* {S}: a subject, {V}: a past transitive verb, {B}: a base form, {O}: an
 * object, {I}: a past intransitive verb, {A}: a state, {P}: a place, {T}: a
 * time, {N}: a noun, each drawn at random; {C}: the next city, {K}: the next
 * country. */
static const char *const filler_templates[] = {
    "{S} {V} {O} {P}.",
    "{S} {I} {P} {T}.",
    "{T}, {S} {V} {O}.",
    "{S} was very {A} {T}.",
    "{S} said that {S} {V} {O}.",
    "{S} {V} {O} and {I}.",
    "Did {S} {B} {O}?",
    "{S} traveled to {C} {T}.",
    "{S} lived in {K} for a year.",
    "{S} once visited {K} {T}.",
    "{S} read a long book about {K}.",
    "{S} sent {O} to a friend in {C}.",
    "{S} likes to {B} {O}.",
    "When {S} {I}, {S} {V} {O}.",
    "There is {O} {P}.",
    "{S} wanted to {B} {O}, but {S} was {A}.",
    "\"Where is the {N}?\" asked {S}.",
    "{S} {I} because {S} was {A}.",
};

/* ---- text --------------------------------------------------------------- */

typedef struct buf {
    char *s;
    size_t n, cap;
} buf;

static void put(buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->s = realloc(b->s, b->cap);
        if (!b->s) {
            fputs("corpus: out of memory\n", stderr);
            exit(1);
        }
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }

static uint32_t pick(gb_rng *r, int n) { return gb_rng_next(r) % (uint32_t)n; }

/* An object: "a red ball", "an old book", "the box". */
static void put_object(buf *b, gb_rng *r) {
    const char *adj = pick(r, 3) ? adjectives[pick(r, GB_COUNT(adjectives))] : NULL;
    const char *noun = nouns[pick(r, GB_COUNT(nouns))];
    const char *next = adj ? adj : noun;
    if (pick(r, 2)) puts_(b, "the ");
    else puts_(b, strchr("aeiou", next[0]) ? "an " : "a ");
    if (adj) {
        puts_(b, adj);
        puts_(b, " ");
    }
    puts_(b, noun);
}

/* What a fact sentence is about. */
typedef struct fact {
    const struct landmark *landmark; /* NULL for a city fact */
    const struct city *city;
} fact;

/* Filler draws its words from r, and its cities and countries in turn, so
 * that each is named as often as the others. */
typedef struct filler {
    gb_rng r;
    int city, country, ncountries;
    const char *countries[CITY_COUNT];
} filler;

/* The value of placeholder {key}: from the fact f, or else from fl. */
static void put_field(buf *b, char key, const fact *f, filler *fl) {
    gb_rng *r = fl ? &fl->r : NULL;
    switch (key) {
    case 'L':
        if (f->landmark->article[0]) {
            puts_(b, f->landmark->article);
            puts_(b, " ");
        }
        puts_(b, f->landmark->name);
        break;
    case 'C': puts_(b, f ? f->city->name : cities[fl->city++ % CITY_COUNT].name); break;
    case 'K': puts_(b, f ? f->city->country : fl->countries[fl->country++ % fl->ncountries]); break;
    case 'S': puts_(b, subjects[pick(r, GB_COUNT(subjects))]); break;
    case 'V': puts_(b, transitive[pick(r, GB_COUNT(transitive))][1]); break;
    case 'B': puts_(b, transitive[pick(r, GB_COUNT(transitive))][0]); break;
    case 'O': put_object(b, r); break;
    case 'I': puts_(b, intransitive[pick(r, GB_COUNT(intransitive))]); break;
    case 'A': puts_(b, states[pick(r, GB_COUNT(states))]); break;
    case 'P': puts_(b, places[pick(r, GB_COUNT(places))]); break;
    case 'T': puts_(b, times[pick(r, GB_COUNT(times))]); break;
    case 'N': puts_(b, nouns[pick(r, GB_COUNT(nouns))]); break;
    }
}

/* Fill tmpl[0, n) into b (cleared first) and capitalise the first letter. */
static void fill(buf *b, const char *tmpl, size_t n, const fact *f, filler *fl) {
    b->n = 0;
    puts_(b, "");
    for (size_t i = 0; i < n; i++) {
        if (tmpl[i] == '{' && i + 2 < n && tmpl[i + 2] == '}') {
            put_field(b, tmpl[i + 1], f, fl);
            i += 2;
        } else {
            put(b, tmpl + i, 1);
        }
    }
    size_t first = b->s[0] == '"' ? 1 : 0;
    if (b->n > first && b->s[first] >= 'a' && b->s[first] <= 'z') b->s[first] = (char)(b->s[first] - 32);
}

/* ---- the corpus --------------------------------------------------------- */

typedef struct lines {
    char **v;
    size_t n, cap;
} lines;

static void add_line(lines *l, const char *s) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 1024;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
    }
    if (!l->v || !(l->v[l->n++] = strdup(s))) {
        fputs("corpus: out of memory\n", stderr);
        exit(1);
    }
}

/* Each fact with each template: every landmark sentence `repeat` times and
 * every city sentence twice that into out, or, when prompts is not NULL,
 * "prompt\t answer" once per prompt template. */
static void facts(lines *out, lines *prompts, int repeat) {
    buf b = {0};
    int nfacts = GB_COUNT(landmarks) + CITY_COUNT;
    for (int k = 0; k < nfacts; k++) {
        fact f = {k < GB_COUNT(landmarks) ? &landmarks[k] : NULL, NULL};
        f.city = f.landmark ? &cities[f.landmark->city] : &cities[k - GB_COUNT(landmarks)];
        if (!f.landmark && !f.city->country) continue;
        const template *t = f.landmark ? landmark_templates : city_templates;
        int nt = f.landmark ? GB_COUNT(landmark_templates) : GB_COUNT(city_templates);
        for (int i = 0; i < nt; i++) {
            if (!prompts) {
                fill(&b, t[i].text, strlen(t[i].text), &f, NULL);
                for (int j = 0; j < (f.landmark ? repeat : 2 * repeat); j++) add_line(out, b.s);
            } else if (t[i].prompt) {
                size_t n = strlen(t[i].text) - strlen(" {C}."); /* every prompt ends in " {C}." or " {K}." */
                fill(&b, t[i].text, n, &f, NULL);
                puts_(&b, "\t ");
                puts_(&b, f.landmark ? f.city->name : f.city->country);
                add_line(prompts, b.s);
            }
        }
    }
    free(b.s);
}

static const char usage[] =
    "usage: corpus [-o FILE] [--facts] [--repeat N] [--filler N]\n"
    "Writes glassbox's language-model corpus (one sentence per line) to standard output or FILE.\n"
    "--facts writes instead each fact prompt and its answer, tab-separated\n"
    "(\"The Eiffel Tower is in the city of<TAB> Paris\").\n"
    "--repeat N: copies of each landmark sentence, twice that of each city sentence (default 10);\n"
    "--filler N: filler sentences (default 500 per repeat).\n";

static int arg_int(const char *s, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v > 1000000) return -1;
    *out = (int)v;
    return 0;
}

int main(int argc, char **argv) {
    const char *out_path = NULL;
    bool want_facts = false;
    int repeat = 10, nfiller = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--facts")) want_facts = true;
        else if (!strcmp(argv[i], "-o") && i + 1 < argc) out_path = argv[++i];
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc && !arg_int(argv[i + 1], &repeat)) i++;
        else if (!strcmp(argv[i], "--filler") && i + 1 < argc && !arg_int(argv[i + 1], &nfiller)) i++;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage, stdout);
            return 0;
        } else {
            fprintf(stderr, "corpus: bad argument '%s'\n%s", argv[i], usage);
            return 2;
        }
    }
    if (nfiller < 0) nfiller = 500 * repeat;
    lines all = {0}, prompts = {0};
    if (want_facts) {
        facts(NULL, &prompts, 0);
    } else {
        facts(&all, NULL, repeat);
        filler fl = {.r = gb_rng_seed(20240611)};
        for (int c = 0; c < CITY_COUNT; c++) {
            int k = 0;
            while (k < fl.ncountries && (!cities[c].country || strcmp(fl.countries[k], cities[c].country))) k++;
            if (k == fl.ncountries && cities[c].country) fl.countries[fl.ncountries++] = cities[c].country;
        }
        buf b = {0};
        for (int i = 0; i < nfiller; i++) {
            const char *t = filler_templates[pick(&fl.r, GB_COUNT(filler_templates))];
            fill(&b, t, strlen(t), NULL, &fl);
            add_line(&all, b.s);
        }
        free(b.s);
        for (size_t i = all.n; i > 1; i--) { /* Fisher-Yates */
            size_t j = pick(&fl.r, (int)i);
            char *t = all.v[i - 1];
            all.v[i - 1] = all.v[j];
            all.v[j] = t;
        }
    }
    const lines *l = want_facts ? &prompts : &all;
    FILE *f = out_path ? fopen(out_path, "wb") : stdout;
    if (!f) {
        fprintf(stderr, "corpus: cannot write %s: %s\n", out_path, strerror(errno));
        return 1;
    }
    for (size_t i = 0; i < l->n; i++) {
        fputs(l->v[i], f);
        fputc('\n', f);
        free(l->v[i]);
    }
    free(l->v);
    int bad = ferror(f) | (out_path ? fclose(f) : fflush(f));
    if (bad) {
        fprintf(stderr, "corpus: cannot write %s: %s\n", out_path ? out_path : "standard output", strerror(errno));
        return 1;
    }
    return 0;
}
