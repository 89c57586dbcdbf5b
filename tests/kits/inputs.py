"""Hostile and odd text, each with the outcome capture promises for it."""

MB = 1024 * 1024
# (name, what the child/toy said, what is stored; None = skipped and counted)
CASES = [
    ("empty", "", None), ("spaces", "    ", None), ("tabs_newlines", "\t\n\r\n", None),
    ("ideographic_space", "\u3000\u3000", None), ("nbsp", "\u00a0", None),
    ("file_separators", "\x1c\x1d\x1e\x1f", None), ("next_line", "\x85", None),
    ("zero_width_space", "\u200b", "\u200b"), ("nul", "a\x00b", "a\ufffdb"),
    ("only_nul", "\x00", "\ufffd"), ("bell_escape", "\x07\x1b[31mred\x1b[0m", "\x07\x1b[31mred\x1b[0m"),
    ("delete", "\x7f", "\x7f"), ("lone_high_surrogate", "x\ud800y", "x\ufffdy"),
    ("lone_low_surrogate", "\udfffz", "\ufffdz"), ("split_pair", "\ud83d\ude00", "😀"),
    ("emoji_zwj", "👨‍👩‍👧‍👦 family", "👨‍👩‍👧‍👦 family"), ("flags", "🇯🇵🇺🇸", "🇯🇵🇺🇸"),
    ("skin_tone", "👍🏽", "👍🏽"), ("arabic", "مرحبا كيف حالك", "مرحبا كيف حالك"),
    ("hebrew_niqqud", "שָׁלוֹם", "שָׁלוֹם"), ("rtl_override", "\u202eevil\u202c", "\u202eevil\u202c"),
    ("zalgo", "z\u0301\u0302\u0303\u0304\u0305", "z\u0301\u0302\u0303\u0304\u0305"),
    ("lone_combining", "\u0301", "\u0301"), ("bom", "\ufeffhello", "\ufeffhello"),
    ("noncharacters", "\uffff\ufffe", "\uffff\ufffe"), ("private_use", "\ue000\U000f0000", "\ue000\U000f0000"),
    ("math_alphabet", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢"), ("cjk", "我喜欢熊猫。", "我喜欢熊猫。"),
    ("line_separators", "a\u2028b\u2029c", "a\u2028b\u2029c"),
    ("json", '{"code": 0, "msg": "ok", "data": true}', '{"code": 0, "msg": "ok", "data": true}'),
    ("json_breakout", '"}, "macAddress": "00:00:00:00:00:00', '"}, "macAddress": "00:00:00:00:00:00'),
    ("sql", "'; DROP TABLE turns; --", "'; DROP TABLE turns; --"),
    ("sql_unicode_quote", "‘ OR 1=1 --", "‘ OR 1=1 --"), ("html", "<script>alert(1)</script>", "<script>alert(1)</script>"),
    ("format_strings", "%s %n {0} ${HOME} {{x}}", "%s %n {0} ${HOME} {{x}}"),
    ("escapes", "\\u0000 \\n \\\\", "\\u0000 \\n \\\\"), ("padded", "  hello  ", "hello"),
    ("long_word", "a" * 5000, "a" * 5000), ("one_megabyte", "x" * MB, "x" * MB),
    ("one_megabyte_emoji", "🐉" * (MB // 4), "🐉" * (MB // 4)),
]
