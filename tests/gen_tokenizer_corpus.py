#!/usr/bin/env python3
"""Writes tests/fixtures/tokenizer_corpus.json: the texts on which bitnet.h's
tokenizer is compared with other implementations (tests/tokenizer_peers.js).

Hand-written samples (written for this project) plus seeded random variations of
them; the same seed always gives the same file.  Every text is valid UTF-8 with
no lone surrogates, so that every peer can read it.

Usage: tests/gen_tokenizer_corpus.py [out.json]
"""
import json, os, random, sys

SEED = 20250415
rng = random.Random(SEED)

# ---------------------------------------------------------------- samples
PROSE = [
    "The quick brown fox jumps over the lazy dog while the farmer's daughter counts sheep in the meadow.",
    "When the ship finally reached the harbour, nobody on board could remember why they had left in the first place.",
    "A ternary weight is either minus one, zero or plus one; that is why a matrix multiplication becomes a sequence of additions.",
    "She said, \"I'll be there by noon,\" but the train was late again, and it didn't arrive until half past two.",
    "Isn't it strange that we've never asked what they'd do if the lights went out? I'm sure they'll manage.",
    "In 1969, 600 million people watched two astronauts walk on the Moon; the mission lasted 8 days, 3 hours and 18 minutes.",
    "Dear Sir or Madam,\n\nThank you for your letter of 3 March. We regret to inform you that the item is out of stock.\n\nYours faithfully,\nThe Management",
    "Chapter 1\n\nIt was a bright cold day in spring, and the clocks in the old tower had stopped at seven minutes past four.",
    "Q: What's the capital of Australia?\nA: Canberra, not Sydney -- a common mistake.",
    "HE SHOUTED: \"DON'T TOUCH THAT!\" BUT IT WAS TOO LATE; THE VASE HAD ALREADY FALLEN.",
    "e.g., i.e., etc., vs. -- abbreviations like U.S.A., Ph.D. and a.m./p.m. are tricky for tokenizers.",
    "The recipe calls for 2 1/2 cups of flour, 3/4 cup of sugar, 1.5 teaspoons of salt and 250 ml of warm milk.",
    "Mr. O'Neill and Ms. D'Angelo met at the café near the Rue de l'Université, where they'd ordered crème brûlée.",
    "   Indented text with leading spaces, trailing spaces   \nand a final line without a newline",
    "Bullet list:\n- first item\n- second item\n  - nested item\n* another style\n1. numbered\n2) numbered again",
]

CODE = [
    "#include <stdio.h>\n\nint main(int argc, char **argv) {\n    for (int i = 0; i < argc; i++)\n        printf(\"%d: %s\\n\", i, argv[i]);\n    return 0;\n}\n",
    "def fibonacci(n: int) -> int:\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n\nprint([fibonacci(i) for i in range(10)])\n",
    "const add = (a, b) => a + b;\nexport async function load(url) {\n  const res = await fetch(url, { method: 'GET' });\n  if (!res.ok) throw new Error(`HTTP ${res.status}`);\n  return res.json();\n}\n",
    "fn main() {\n    let v: Vec<u32> = (1..=10).map(|x| x * x).collect();\n    println!(\"{:?}\", v);\n    let s = String::from(\"hello\");\n    let r = &s[..2];\n}\n",
    "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tch := make(chan int, 3)\n\tgo func() { ch <- 42 }()\n\tfmt.Println(<-ch)\n}\n",
    "SELECT u.id, u.name, COUNT(o.id) AS orders\nFROM users u LEFT JOIN orders o ON o.user_id = u.id\nWHERE u.created_at >= '2024-01-01'\nGROUP BY u.id, u.name\nHAVING COUNT(o.id) > 5\nORDER BY orders DESC;\n",
    "#!/bin/sh\nset -eu\nfor f in *.txt; do\n  wc -l \"$f\" | awk '{print $1}' >> counts.log 2>&1\ndone\n[ -d build ] || mkdir -p build && echo ok\n",
    "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>Test &amp; demo</title></head>\n<body>\n  <div class=\"box\" id='main'>Hello, <b>world</b>!&nbsp;&lt;tag&gt;</div>\n</body>\n</html>\n",
    "{\"name\": \"bitnet\", \"version\": \"1.0.0\", \"tags\": [\"ai\", \"c\"], \"nested\": {\"a\": 1, \"b\": [true, false, null], \"c\": -1.5e-3}}",
    ".container > .item:nth-child(2n+1) {\n  margin: 0 auto;\n  color: #ff00aa;\n  transition: all 0.3s ease-in-out;\n}\n@media (max-width: 600px) { .item { display: none; } }\n",
    "public class Main {\n    public static void main(String[] args) {\n        Map<String, List<Integer>> m = new HashMap<>();\n        m.computeIfAbsent(\"k\", k -> new ArrayList<>()).add(1);\n    }\n}\n",
    "template <typename T>\nstd::vector<T> filter(const std::vector<T>& v, std::function<bool(const T&)> f) {\n    std::vector<T> out;\n    std::copy_if(v.begin(), v.end(), std::back_inserter(out), f);\n    return out;\n}\n",
    "x = [i**2 for i in range(100) if i % 3 == 0]  # squares\ny = {k: v for k, v in zip('abc', (1, 2, 3))}\nz = lambda *args, **kw: (args, kw)\n",
    "diff --git a/src/main.c b/src/main.c\n@@ -10,7 +10,7 @@\n-    int x = 0;\n+    long x = 0L;\n     return x;\n",
    "\\begin{equation}\n  E = mc^2 \\quad \\text{and} \\quad \\int_0^\\infty e^{-x^2}\\,dx = \\frac{\\sqrt{\\pi}}{2}\n\\end{equation}\n",
]

WORLD = [
    "我们今天去公园散步，天气非常好。人工智能正在改变世界。",
    "北京是中国的首都，有着三千多年的历史。《红楼梦》是一部伟大的小说。",
    "今日は良い天気ですね。東京タワーに行きましょう！カタカナとひらがなと漢字。",
    "ラーメンを食べたいです。ｶﾀｶﾅ（半角）もあります。㍿㌔",
    "안녕하세요. 오늘 날씨가 정말 좋네요. 한국어는 한글로 씁니다.",
    "مرحبا بالعالم! اللُّغَةُ العَرَبِيَّةُ جَمِيلَةٌ. الرقم ١٢٣٤٥ بالأرقام العربية.",
    "שָׁלוֹם עוֹלָם! עברית נכתבת מימין לשמאל. המספר 42 הוא התשובה.",
    "नमस्ते दुनिया! हिन्दी भाषा देवनागरी लिपि में लिखी जाती है। संख्या १२३४५।",
    "สวัสดีครับ ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ ตัวเลข ๑๒๓๔๕ และ ๖๗๘๙๐",
    "Привет, мир! Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Україна, Їжак, Ґанок — українська мова має літери і, ї, є, ґ.",
    "Γειά σου Κόσμε! Ἐν ἀρχῇ ἦν ὁ λόγος. Τὸ ἀλφάβητο: αβγδεζηθ ΑΒΓΔ ς.",
    "Ελληνικά με τόνους: άέήίόύώ ΐΰ και διαλυτικά ϊϋ.",
    "Tiếng Việt có nhiều dấu: ả, ã, ạ, ằ, ẩ, ễ, ộ, ướ.",
    "Zażółć gęślą jaźń. Příliš žluťoučký kůň úpěl ďábelské ódy. Öl, Ärger, Übermut, Straße.",
    "Türkçe: İstanbul, ılık, şeker, çiçek, ğ. Español: ¿Qué tal? ¡Muy bien! Niño, año.",
    "ქართული ენა, Հայերեն լեզու, አማርኛ ቋንቋ, ᏣᎳᎩ, ᚠᚢᚦᚨᚱᚲ, ꦗꦮ",
    "தமிழ் மொழி, తెలుగు భాష, ಕನ್ನಡ, മലയാളം, বাংলা ভাষা, ગુજરાતી, ਪੰਜਾਬੀ, සිංහල",
    "ພາສາລາວ, ភាសាខ្មែរ, မြန်မာဘာသာ, བོད་ཡིག, ᠮᠣᠩᠭᠣᠯ",
]

EMOJI = [
    "I love it ❤️ 😀😃😄😁 🎉🎊",
    "Skin tones: 👍🏻 👍🏼 👍🏽 👍🏾 👍🏿 👋🏽",
    "Families: 👨‍👩‍👧‍👦 👩‍❤️‍💋‍👨 👨‍💻 🧑🏿‍🚀 🏳️‍🌈 🏴‍☠️",
    "Flags: 🇫🇷 🇯🇵 🇺🇸 🇩🇪 🇧🇷 🇮🇳 🏴󠁧󠁢󠁳󠁣󠁴󠁿",
    "Keycaps: 1️⃣ 2️⃣ #️⃣ *️⃣ and symbols ©️ ®️ ™️ ☺︎ ☺️",
    "Animals🐶🐱🐭and food🍕🍔🍟mixed with text👀!",
]

NUMBERS_SEP = ["1,234,567.89", "1 234 567,89", "1'234'567", "1_000_000", "12.5%", "-0.000123", "3.14159e-10",
               "0xDEADBEEF", "0b1010_1010", "1e100", "+1 (555) 123-4567", "2024-04-15T13:45:30Z", "192.168.0.1",
               "v1.2.3-rc.4", "$1,000.00", "€99,99", "¥5000", "10:30", "1/2/2025", "#12345", "№7", "4×4=16"]
NON_ASCII_DIGITS = ["٠١٢٣٤٥٦٧٨٩", "۰۱۲۳۴۵۶۷۸۹", "०१२३४५६७८९", "๐๑๒๓๔๕๖๗๘๙", "０１２３４５６７８９", "০১২৩৪৫৬৭৮৯",
                    "²³¹⁴", "½¼¾⅓⅞", "ⅠⅡⅢⅣⅫⅯ", "①②③⑩⑳", "𝟎𝟏𝟐𝟗", "〇一二三", "፩፪፫", "၀၁၂၃", "᠐᠑᠒"]

CONTRACTIONS = ["s", "t", "re", "ve", "m", "ll", "d"]

UNICODE_SPACES = ["\u00a0", "\u1680", "\u2000", "\u2001", "\u2002", "\u2003", "\u2004", "\u2005", "\u2006", "\u2007",
                  "\u2008", "\u2009", "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\u0085",
                  "\u000b", "\u000c", "\u001c", "\u001d", "\u001e", "\u001f", "\u180e", "\u200b", "\u200c", "\u200d",
                  "\u2060", "\ufeff"]

WORDS = ("the of and to in is was for on that with as by at from this be are it an or have not but had his they "
         "were which one you all she there their been has when who will more no if out so said what up its about "
         "into than them can only other new some could time these two may then do first any my now such like our "
         "over man me even most made after also did many before must through back years where much your way well "
         "down should because each just those people how too little state good very make world still own see men "
         "work long get here between both life being under never day same another know while last might us great "
         "old year off come since against go came right used take three model token weight matrix layer kernel "
         "vector bitnet ternary quantize activation attention embedding inference memory cache thread").split()

LETTERS = {
    'latin': "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    'accented': "àáâãäåæçèéêëìíîïñòóôõöøùúûüýÿßœšžłđ",
    'cyrillic': "абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВГД",
    'greek': "αβγδεζηθικλμνξοπρστυφχψωΑΒΓΔ",
    'cjk': "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可",
    'kana': "あいうえおかきくけこさしすせそアイウエオカキクケコ",
    'hangul': "가나다라마바사아자차카타파하한국어",
    'arabic': "ابتثجحخدذرزسشصضطظعغفقكلمنهوي",
    'devanagari': "कखगघचछजझटठडढणतथदधनपफबभमयरलवशसह",
    'thai': "กขคฆงจฉชซญฎฏฐฑฒณดตถทธนบปผฝพฟภมยรลวศษสหฬอฮ",
    'hebrew': "אבגדהוזחטיכלמנסעפצקרשת",
}
MARKS = "\u0300\u0301\u0302\u0303\u0308\u0327\u064e\u064f\u0650\u0651\u0652\u05b0\u05b4\u05bc\u093e\u093f\u0940\u094d\u0e31\u0e34\u0e35\u0e48\u0e49\u0e4a\u302a\u20dd"
PUNCT = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~¡¿«»“”‘’„–—…·•§¶†‡‰′″‹›€£¥¢©®™°±×÷"
NEW_IN_16_17 = ["\U00010d40\U00010d41", "\U00010d50\U00010d51\U00010d52", "\U00011380\U00011381", "\U0002ebf0\U0002ebf1",
                "\U00016d40\U00016d41", "\U00010940\U00010941", "\U00011db0\U00011db1", "\u0c5c\u0cdc", "\U00016ea0\U00016ea1"]
SPECIAL_TEXT = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>",
                "<|reserved_special_token_5|>", "<|python_tag|>", "<|eom_id|>"]


def words(n):
    return ' '.join(rng.choice(WORDS) for _ in range(n))


def sentence():
    s = words(rng.randint(4, 18))
    s = s[0].upper() + s[1:]
    if rng.random() < 0.3:
        s += ', ' + words(rng.randint(2, 8))
    return s + rng.choice(['.', '.', '.', '?', '!', '...', ';', ':'])


def paragraph():
    return ' '.join(sentence() for _ in range(rng.randint(2, 7)))


def random_script_text():
    name = rng.choice(list(LETTERS))
    out = []
    for _ in range(rng.randint(1, 12)):
        w = ''.join(rng.choice(LETTERS[name]) for _ in range(rng.randint(1, 9)))
        if rng.random() < 0.2:
            w += rng.choice(MARKS)
        out.append(w)
    return rng.choice([' ', ' ', '', '\u3000', ', ']).join(out)


def random_codepoint():
    while True:
        r = rng.random()
        if r < 0.4:
            cp = rng.randint(0x20, 0x7e)
        elif r < 0.6:
            cp = rng.randint(0x80, 0x7ff)
        elif r < 0.85:
            cp = rng.randint(0x800, 0xffff)
        else:
            cp = rng.randint(0x10000, 0x10ffff)
        if not (0xd800 <= cp < 0xe000):
            return chr(cp)


def number(digits):
    return ''.join(rng.choice('0123456789') for _ in range(digits))


def ws_run():
    return ''.join(rng.choice([' ', ' ', ' ', '\t', '\n', '\r\n', '\r', '\u00a0', '\u3000', '\u2028', '\u0085', '\u000b'])
                   for _ in range(rng.randint(1, 8)))


def mixture():
    parts = []
    for _ in range(rng.randint(2, 12)):
        k = rng.random()
        if k < 0.2:
            parts.append(words(rng.randint(1, 5)))
        elif k < 0.3:
            parts.append(number(rng.randint(1, 12)))
        elif k < 0.4:
            parts.append(ws_run())
        elif k < 0.5:
            parts.append(''.join(rng.choice(PUNCT) for _ in range(rng.randint(1, 4))))
        elif k < 0.6:
            parts.append(random_script_text())
        elif k < 0.7:
            parts.append(rng.choice(EMOJI)[-8:])
        elif k < 0.8:
            parts.append("'" + rng.choice(CONTRACTIONS) + rng.choice(['', 'x', ' ', 'ing']))
        elif k < 0.9:
            parts.append(''.join(random_codepoint() for _ in range(rng.randint(1, 6))))
        else:
            parts.append(rng.choice(UNICODE_SPACES) + rng.choice(['a', '1', '!', ' ', '\n', '']))
    return ''.join(parts)


def main():
    cases = []

    def add(cat, text):
        cases.append({'cat': cat, 'text': text})

    for s in PROSE:
        add('prose', s)
    for _ in range(300):
        add('prose', paragraph() if rng.random() < 0.7 else '\n\n'.join(paragraph() for _ in range(rng.randint(2, 5))))
    for s in CODE:
        add('code', s)
    for _ in range(200):  # code with shuffled identifiers and indentation
        s = rng.choice(CODE)
        ind = rng.choice(['    ', '\t', '  ', '        '])
        s = s.replace('    ', ind)
        s = s.replace('main', rng.choice(['main', 'run_all', 'Main2', 'x_y_z', 'αβ']))
        add('code', s * rng.randint(1, 3))
    for s in WORLD:
        add('world', s)
    for _ in range(300):
        add('world', rng.choice(WORLD)[rng.randint(0, 10):] + ' ' + random_script_text())
    for s in EMOJI:
        add('emoji', s)
    for _ in range(60):
        add('emoji', ''.join(rng.choice(EMOJI).split(': ')[-1]) + ' ' + words(3))
    # numbers of every length, with separators, non-ASCII digits
    for n in range(1, 41):
        add('numbers', number(n))
        add('numbers', 'x' + number(n) + 'y ' + number(n) + ' ' + number(n) + '.')
    for s in NUMBERS_SEP:
        add('numbers', s)
        add('numbers', 'Total: ' + s + ' (approx. ' + s + ')')
    for s in NON_ASCII_DIGITS:
        add('numbers', s)
        add('numbers', 'n=' + s + s[:3] + ' 12' + s[:2])
    for _ in range(100):
        add('numbers', ' '.join(rng.choice([number(rng.randint(1, 9)), rng.choice(NUMBERS_SEP), rng.choice(NON_ASCII_DIGITS)])
                                for _ in range(rng.randint(1, 8))))
    # contractions in every letter case, after letters, spaces and punctuation
    for c in CONTRACTIONS:
        variants = {c, c.upper(), c.capitalize(), c[:-1] + c[-1].upper(), c[0] + c[1:].upper()}
        for v in sorted(variants):
            for pre in ["it", "IT", "", " ", "x'", "1", "!", "\n"]:
                for post in ["", " ok", "x", "XYZ", "'", "123", "\n"]:
                    add('contractions', pre + "'" + v + post)
    add('contractions', "it'ſ it'ſt 'ſx ' s 'S 'ſ'")
    add('contractions', "don’t won’t it’s (curly apostrophes are not contractions)")
    add('contractions', "''s '''ll 's's'd 'LL'VE'RE")
    # whitespace
    for n in range(1, 25):
        add('whitespace', 'a' + ' ' * n + 'b')
        add('whitespace', ' ' * n)
        add('whitespace', 'x' + '\n' * n + 'y' + '\t' * (n % 7) + 'z')
        add('whitespace', ('\r\n' * n) + 'line' + ' ' * (n % 5))
    for _ in range(150):
        add('whitespace', ''.join(rng.choice([ws_run(), words(1), '!', '1'])) + ws_run() + rng.choice(['', 'end', '.']))
    for sp in UNICODE_SPACES:
        for ctx in [("a", "b"), ("a", "!"), ("!", "1"), ("", ""), (" ", "x"), ("\n", "\n"), ("word", " word")]:
            add('unicode-spaces', ctx[0] + sp + ctx[1])
            add('unicode-spaces', ctx[0] + sp * 3 + ctx[1])
    # control characters (U+0000 included)
    for cp in list(range(0, 32)) + [0x7f] + list(range(0x80, 0xa0)):
        add('control', 'a' + chr(cp) + 'b' + chr(cp) * 2 + ' ' + chr(cp) + '!')
    # very long words and lines
    add('long', 'a' * 20000)
    add('long', ''.join(rng.choice('abcdefghijklmnopqrstuvwxyz') for _ in range(30000)))
    add('long', '9' * 20000)
    add('long', number(30000))
    add('long', ' ' * 20000 + 'x')
    add('long', '\n' * 5000)
    add('long', '!' * 10000)
    add('long', '中文' * 5000)
    add('long', 'ab ' * 10000)
    add('long', '😀' * 3000)
    add('long', ''.join(rng.choice(LETTERS['thai']) + rng.choice(MARKS[-6:]) for _ in range(3000)))
    add('long', ' '.join(sentence() for _ in range(400)))
    # Unicode version edges and special-token text (all peers parse special tokens in text)
    for s in NEW_IN_16_17:
        add('unicode-version', 'a' + s + 'b ' + s + '!')
    for s in SPECIAL_TEXT:
        add('special', 'Hello' + s + 'world ' + s + s + '\n')
    add('special', '<|eot_id <|unknown|> <| eot_id|> <<|eot_id|>> <|EOT_ID|>')
    # random mixtures
    while sum(len(c['text'].encode('utf-8')) for c in cases) < 1_100_000 or len(cases) < 2100:
        add('mixed', mixture())
    for _ in range(200):
        add('random', ''.join(random_codepoint() for _ in range(rng.randint(1, 40))))

    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), 'fixtures', 'tokenizer_corpus.json')
    with open(out, 'w', encoding='utf-8') as f:
        json.dump({'seed': SEED, 'cases': cases}, f, ensure_ascii=False, indent=0)
        f.write('\n')
    total = sum(len(c['text'].encode('utf-8')) for c in cases)
    print('%d cases, %d bytes of text -> %s' % (len(cases), total, out))


if __name__ == '__main__':
    main()
