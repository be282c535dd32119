//! The selector language, as a specification.

use std::collections::BTreeMap;

use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn sel(text: &str) -> Selector {
    Selector::parse(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
}

/// (behaviour, selector, labels it matches, labels it does not match)
type MatchCase = (
    &'static str,
    &'static str,
    &'static [&'static [(&'static str, &'static str)]],
    &'static [&'static [(&'static str, &'static str)]],
);

const MATCH_CASES: &[MatchCase] = &[
    (
        "equal_matches_exact_value",
        r#"a == "b""#,
        &[&[("a", "b")], &[("a", "b"), ("c", "d")]],
        &[&[], &[("a", "c")], &[("c", "d")]],
    ),
    (
        "equal_is_case_sensitive",
        r#"a == "B""#,
        &[&[("a", "B")]],
        &[&[("a", "b")]],
    ),
    (
        "equal_with_empty_value_needs_present_label",
        r#"a == """#,
        &[&[("a", "")]],
        &[&[]],
    ),
    (
        "not_equal_is_true_when_label_absent",
        r#"a != "b""#,
        &[&[], &[("c", "b")], &[("a", "c")]],
        &[&[("a", "b")]],
    ),
    (
        "in_matches_any_member",
        r#"a in {"x", "y"}"#,
        &[&[("a", "x")], &[("a", "y")]],
        &[&[], &[("a", "z")]],
    ),
    (
        "in_empty_set_matches_nothing",
        r#"a in {}"#,
        &[],
        &[&[], &[("a", "")]],
    ),
    (
        "not_in_is_true_when_label_absent",
        r#"a not in {"x", "y"}"#,
        &[&[], &[("a", "z")]],
        &[&[("a", "x")], &[("a", "y")]],
    ),
    (
        "not_in_empty_set_matches_everything",
        r#"a not in {}"#,
        &[&[], &[("a", "x")]],
        &[],
    ),
    (
        "has_ignores_the_value",
        "has(a)",
        &[&[("a", "")], &[("a", "x")]],
        &[&[], &[("b", "a")]],
    ),
    (
        "not_has_means_absent",
        "!has(a)",
        &[&[], &[("b", "x")]],
        &[&[("a", "x")]],
    ),
    (
        "contains_is_substring",
        r#"a contains "ell""#,
        &[&[("a", "hello")], &[("a", "ell")]],
        &[&[], &[("a", "hel")]],
    ),
    (
        "contains_empty_string_needs_present_label",
        r#"a contains """#,
        &[&[("a", "")]],
        &[&[]],
    ),
    (
        "starts_with_is_prefix",
        r#"a starts with "he""#,
        &[&[("a", "hello")], &[("a", "he")]],
        &[&[], &[("a", "the")]],
    ),
    (
        "ends_with_is_suffix",
        r#"a ends with "lo""#,
        &[&[("a", "hello")]],
        &[&[], &[("a", "lot")]],
    ),
    (
        "all_matches_everything",
        "all()",
        &[&[], &[("a", "b")]],
        &[],
    ),
    ("empty_selector_is_all", "", &[&[], &[("a", "b")]], &[]),
    ("blank_selector_is_all", " \t ", &[&[], &[("a", "b")]], &[]),
    (
        "global_is_true_for_plain_evaluation",
        "global()",
        &[&[], &[("a", "b")]],
        &[],
    ),
    (
        "not_all_matches_nothing",
        "!all()",
        &[],
        &[&[], &[("a", "b")]],
    ),
    (
        "and_needs_both",
        r#"a == "1" && b == "2""#,
        &[&[("a", "1"), ("b", "2")]],
        &[&[("a", "1")], &[("b", "2")], &[("a", "1"), ("b", "3")]],
    ),
    (
        "or_needs_either",
        r#"a == "1" || b == "2""#,
        &[&[("a", "1")], &[("b", "2")]],
        &[&[], &[("a", "2"), ("b", "1")]],
    ),
    (
        "and_binds_tighter_than_or",
        r#"a == "1" || b == "2" && c == "3""#,
        &[&[("a", "1")], &[("b", "2"), ("c", "3")]],
        &[&[("b", "2")]],
    ),
    (
        "parentheses_override_precedence",
        r#"(a == "1" || b == "2") && c == "3""#,
        &[&[("a", "1"), ("c", "3")]],
        &[&[("a", "1")]],
    ),
    (
        "not_binds_to_one_operation",
        r#"!a == "1" && b == "2""#,
        &[&[("b", "2")], &[("a", "2"), ("b", "2")]],
        &[&[("a", "1"), ("b", "2")], &[]],
    ),
    (
        "not_of_parenthesised_or",
        r#"!(a == "1" || b == "2")"#,
        &[&[], &[("a", "2")]],
        &[&[("a", "1")], &[("b", "2")]],
    ),
    (
        "double_negation_cancels",
        "!!has(a)",
        &[&[("a", "x")]],
        &[&[]],
    ),
    (
        "triple_negation_is_negation",
        "! !! has(a)",
        &[&[]],
        &[&[("a", "x")]],
    ),
    (
        "single_quotes_work_like_double",
        "a == 'b'",
        &[&[("a", "b")]],
        &[&[("a", "c")]],
    ),
    (
        "double_quote_inside_single_quotes",
        r#"a == '"'"#,
        &[&[("a", "\"")]],
        &[&[("a", "'")]],
    ),
    (
        "single_quote_inside_double_quotes",
        r#"a in {"'", '"'}"#,
        &[&[("a", "'")], &[("a", "\"")]],
        &[&[("a", "x")]],
    ),
    (
        "key_with_prefix_and_punctuation",
        r#"projectcalico.org/namespace == "default" && a.b/c-d_e == "x""#,
        &[&[
            ("projectcalico.org/namespace", "default"),
            ("a.b/c-d_e", "x"),
        ]],
        &[&[("projectcalico.org/namespace", "default")]],
    ),
    (
        "key_may_start_with_digit_or_dash",
        r#"0-a == "x" && -b == "y""#,
        &[&[("0-a", "x"), ("-b", "y")]],
        &[&[]],
    ),
    (
        "keywords_are_valid_keys",
        r#"in in {"a"} && has == "x" && all == "y""#,
        &[&[("in", "a"), ("has", "x"), ("all", "y")]],
        &[&[]],
    ),
    (
        "values_keep_spaces_and_unicode",
        r#"a == " ü b ""#,
        &[&[("a", " ü b ")]],
        &[&[("a", "ü b")]],
    ),
];

#[test]
fn selectors_match_as_specified() {
    for (behaviour, text, yes, no) in MATCH_CASES {
        let s = sel(text);
        let again = sel(&s.to_string());
        for l in *yes {
            let l = labels(l);
            assert!(s.matches(&l), "{behaviour}: {text:?} should match {l:?}");
            assert!(
                again.matches(&l),
                "{behaviour}: canonical {again} should match {l:?}"
            );
        }
        for l in *no {
            let l = labels(l);
            assert!(
                !s.matches(&l),
                "{behaviour}: {text:?} should not match {l:?}"
            );
            assert!(
                !again.matches(&l),
                "{behaviour}: canonical {again} should not match {l:?}"
            );
        }
    }
}

#[test]
fn global_is_true_only_for_global_items_when_scoped() {
    let global = sel("global()");
    let none = labels(&[]);
    assert!(global.matches_in_scope(&none, Scope::Global));
    assert!(!global.matches_in_scope(&none, Scope::Namespaced));
    let either = sel(r#"global() || name == "prod""#);
    assert!(either.matches_in_scope(&labels(&[("name", "prod")]), Scope::Namespaced));
    assert!(!either.matches_in_scope(&labels(&[("name", "dev")]), Scope::Namespaced));
    // all() does not care about scope.
    assert!(sel("all()").matches_in_scope(&none, Scope::Namespaced));
}

#[test]
fn namespace_selector_translates_like_calico() {
    let cases = [
        ("all()", "has(projectcalico.org/namespace)"),
        ("global()", "!has(projectcalico.org/namespace)"),
        (r#"team == "a""#, r#"pcns.team == "a""#),
        (
            r#"global() || has(team)"#,
            "!has(projectcalico.org/namespace) || has(pcns.team)",
        ),
    ];
    for (ns_selector, endpoint_selector) in cases {
        let got = sel(ns_selector)
            .namespace_selector_to_endpoint_selector()
            .expect("keys stay valid");
        assert_eq!(got.to_string(), endpoint_selector, "for {ns_selector}");
    }
}

#[test]
fn key_prefix_is_applied_to_every_key() {
    let s = sel(r#"a == "1" && !has(b) || c in {"x"}"#)
        .with_key_prefix("pcsa.")
        .expect("valid");
    assert_eq!(
        s.to_string(),
        r#"pcsa.a == "1" && !has(pcsa.b) || pcsa.c in {"x"}"#
    );
    assert_eq!(s.keys(), ["pcsa.a", "pcsa.b", "pcsa.c"]);
}

#[test]
fn canonical_text_is_as_specified() {
    let cases = [
        ("", "all()"),
        ("  all( )  ", "all()"),
        (" ((all()))", "all()"),
        ("global( )", "global()"),
        ("a=='b'", r#"a == "b""#),
        (r#"a=='"'"#, r#"a == '"'"#),
        ("a!='b'", r#"a != "b""#),
        ("has( a )", "has(a)"),
        ("!!has(a)", "has(a)"),
        ("!(!has(a))", "has(a)"),
        ("!a=='b'", r#"!(a == "b")"#),
        ("a startswith 'x'", r#"a starts with "x""#),
        ("a  ends\twith 'x'", r#"a ends with "x""#),
        ("a contains'x'", r#"a contains "x""#),
        ("a notin {'x'}", r#"a not in {"x"}"#),
        (r#"a in {"z", "x", "z", 'a',}"#, r#"a in {"a", "x", "z"}"#),
        ("a in{}", "a in {}"),
        ("has(a)&&(has(b)&&has(c))", "has(a) && has(b) && has(c)"),
        ("(has(a)||has(b))||has(c)", "has(a) || has(b) || has(c)"),
        ("has(a)&&has(b)||has(c)", "has(a) && has(b) || has(c)"),
        ("has(a)&&(has(b)||has(c))", "has(a) && (has(b) || has(c))"),
        ("!(has(a)&&has(b))", "!(has(a) && has(b))"),
        ("!(has(a)||has(b))&&has(c)", "!(has(a) || has(b)) && has(c)"),
        ("!(a in {'x'})", r#"!(a in {"x"})"#),
    ];
    for (input, canonical) in cases {
        let s = sel(input);
        assert_eq!(s.to_string(), canonical, "canonical form of {input:?}");
        assert_eq!(
            sel(canonical),
            s,
            "{canonical:?} parses back to the same tree"
        );
    }
}

#[test]
fn trivially_equal_selectors_share_canonical_text_and_id() {
    let groups: &[&[&str]] = &[
        &[
            r#"app == "web""#,
            "app=='web'",
            " app ==\t'web' ",
            "(app == 'web')",
            "!!(app == \"web\")",
        ],
        &[
            r#"a in {"x", "y"}"#,
            "a in {'y','x'}",
            "a in { 'x', 'y', 'x', }",
        ],
        &[
            "has(a) && has(b) && has(c)",
            "(has(a) && has(b)) && has(c)",
            "has(a) && (has(b) && has(c))",
        ],
        &["", "all()", "  ", "(all())"],
    ];
    for group in groups {
        let first = sel(group[0]);
        for text in &group[1..] {
            let other = sel(text);
            assert_eq!(other, first, "{text:?} vs {:?}", group[0]);
            assert_eq!(other.to_string(), first.to_string());
            assert_eq!(other.id(), first.id());
        }
    }
}

#[test]
fn id_is_short_nft_safe_and_stable() {
    // Pinned values (computed independently with Python's hashlib and
    // base64.b32encode): an ID must never change between releases, since
    // nft set names are derived from it.
    assert_eq!(sel("all()").id(), "s_ewudctcv7zrelfokqc6bu6");
    assert_eq!(sel(r#"app == "web""#).id(), "s_s2cpvfnkrg6vgxahllf5mh");
    for text in [
        "",
        r#"a == "b""#,
        r#"a == "c""#,
        "has(projectcalico.org/namespace)",
    ] {
        let id = sel(text).id();
        assert_eq!(id.len(), ID_LEN);
        assert!(id.starts_with("s_"));
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{id}"
        );
    }
    assert_ne!(sel(r#"a == "b""#).id(), sel(r#"a == "c""#).id());
}

#[test]
fn base32_matches_rfc4648_vectors() {
    // RFC 4648 section 10, lowercased, without padding.
    let vectors = [
        ("f", "my"),
        ("fo", "mzxq"),
        ("foo", "mzxw6"),
        ("foob", "mzxw6yq"),
        ("fooba", "mzxw6ytb"),
        ("foobar", "mzxw6ytboi"),
    ];
    for (input, expected) in vectors {
        assert_eq!(base32_lower(input.as_bytes(), 100), expected);
    }
    assert_eq!(base32_lower(b"foobar", 3), "mzx");
}

/// (input, error offset, expected-text fragment)
const ERROR_CASES: &[(&str, usize, &str)] = &[
    ("b", 1, "an operator"),
    ("a ", 2, "an operator"),
    ("b == b", 5, r#"'"' or '\''"#),
    ("'b1' == b", 0, "a label key"),
    ("a b", 2, "an operator"),
    ("!", 1, "a label key"),
    (r#"foo == "bar" &"#, 13, "'&&'"),
    (r#"foo == "bar" |"#, 13, "'||'"),
    ("foo != ||", 7, r#"'"' or '\''"#),
    (r#"foo in {"", ||"#, 12, "a string literal or '}'"),
    (r#"foo in {"" "x"}"#, 11, "',' or '}'"),
    (r#"foo in {,}"#, 8, "a string literal or '}'"),
    (r#"foo in """#, 7, "'{'"),
    (r#""FOO"#, 0, "a label key"),
    (
        r#"a == "FOO"#,
        9,
        "'\"' to close the string opened at byte 5",
    ),
    (
        r#"a == 'FOO""#,
        10,
        "'\\'' to close the string opened at byte 5",
    ),
    ("(", 1, "a label key"),
    (r#"(a == "foo""#, 11, "'&&', '||' or ')'"),
    (")", 0, "a label key"),
    ("()", 1, "a label key"),
    ("%", 0, "a label key"),
    (r#"a == "b" && %"#, 12, "a label key"),
    (r#"a == "b" || %"#, 12, "a label key"),
    ("has(foo) &&", 11, "a label key"),
    (
        "has(foo) has(bar)",
        9,
        "'&&', '||' or the end of the selector",
    ),
    ("has()", 4, "a label key"),
    ("has(a", 5, "')'"),
    ("has (a)", 4, "an operator"),
    ("all(x)", 4, "')'"),
    ("global(", 7, "')'"),
    ("a = 'b'", 2, "an operator"),
    ("a === 'b'", 4, r#"'"' or '\''"#),
    ("a instance {'b'}", 2, "an operator"),
    ("a starts 'b'", 2, "an operator"),
    ("a not {'b'}", 2, "an operator"),
    ("!= 'b'", 0, "a label key"),
    ("a == 'b')", 8, "'&&', '||' or the end of the selector"),
    ("a == 'b'\n", 8, "'&&', '||' or the end of the selector"),
    ("\na == 'b'", 0, "a label key"),
];

#[test]
fn errors_name_the_byte_and_what_was_expected() {
    let mut wrong = Vec::new();
    for (input, offset, expected) in ERROR_CASES {
        match Selector::parse(input) {
            Ok(s) => wrong.push(format!("{input:?} parsed as {s}")),
            Err(err) if err.offset != *offset || !err.expected.contains(expected) => {
                wrong.push(format!(
                    "{input:?}: got {err}, wanted byte {offset} and {expected:?}"
                ));
            }
            Err(_) => {}
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn error_message_reads_at_byte_n_expected() {
    let err = Selector::parse("a == 'b' &&").expect_err("incomplete");
    assert_eq!(
        err.to_string(),
        "selector parse error at byte 11: expected a label key, '!', '(', has(), all() or global()"
    );
}

#[test]
fn keys_longer_than_512_bytes_are_refused() {
    let ok = format!("has({})", "k".repeat(512));
    assert!(Selector::parse(&ok).is_ok());
    let too_long = format!("has({})", "k".repeat(513));
    let err = Selector::parse(&too_long).expect_err("513-byte key");
    assert_eq!(err.offset, 4);
    assert!(err.expected.contains("at most 512 bytes"));
}

#[test]
fn trees_built_in_code_are_validated_and_normalized() {
    let tree = Expr::And(vec![
        Expr::Not(Box::new(Expr::Not(Box::new(Expr::Has("a".into()))))),
        Expr::And(vec![Expr::Eq("b".into(), "1".into()), Expr::All]),
    ]);
    let s = Selector::from_expr(tree).expect("valid tree");
    assert_eq!(s.to_string(), r#"has(a) && b == "1" && all()"#);
    assert_eq!(
        Selector::from_expr(Expr::Has("bad key".into())),
        Err(ExprError::InvalidKey("bad key".into()))
    );
    assert_eq!(
        Selector::from_expr(Expr::Eq("a".into(), r#"'""#.into())),
        Err(ExprError::UnquotableValue(r#"'""#.into()))
    );
    assert_eq!(
        Selector::from_expr(Expr::Or(vec![]))
            .expect("valid")
            .to_string(),
        "!all()"
    );
}

#[test]
fn and_combines_selectors() {
    let ns = sel("projectcalico.org/namespace == 'prod'");
    let combined = ns.and(&sel("app == 'web' && tier == 'db'"));
    assert_eq!(
        combined.to_string(),
        r#"projectcalico.org/namespace == "prod" && app == "web" && tier == "db""#
    );
}
