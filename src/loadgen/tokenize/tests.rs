use super::*;

/// Costs of a subword tokenizer: a word of n characters is ⌈n/4⌉ tokens,
/// the first word one more, and a template of 5.
fn subword() -> Costs {
    let alone: Vec<u64> = VOCAB
        .iter()
        .map(|w| 5 + 1 + w.len().div_ceil(4) as u64)
        .collect();
    let twice: Vec<u64> = VOCAB
        .iter()
        .zip(&alone)
        .map(|(w, a)| a + w.len().div_ceil(4) as u64)
        .collect();
    Costs::from_counts(5, &alone, &twice).unwrap()
}

fn cost_of(text: &str, c: &Costs) -> u64 {
    text.split(' ')
        .enumerate()
        .map(|(k, w)| {
            let i = VOCAB.iter().position(|v| *v == w).unwrap();
            if k == 0 { c.first[i] } else { c.after[i] }
        })
        .sum()
}

#[test]
fn costs_come_from_the_server_s_counts() {
    let c = subword();
    assert_eq!(c.template, 5);
    let the = VOCAB.iter().position(|w| *w == "the").unwrap();
    let cluster = VOCAB.iter().position(|w| *w == "cluster").unwrap();
    assert_eq!((c.first[the], c.after[the]), (2, 1));
    assert_eq!((c.first[cluster], c.after[cluster]), (3, 2));
    // Counts that say a word is free are not a tokenizer's: llama.cpp
    // asked in vLLM's dialect tokenizes nothing and counts 0 for each.
    let none = Costs::from_counts(0, &[0; 16], &[0; 16]).unwrap_err();
    assert!(
        none.contains("\"the\"") && none.contains("did not tokenize"),
        "{none}"
    );
    let mut once = [4; 16];
    once[3] = 3;
    assert!(
        Costs::from_counts(3, &once, &[5; 16]).is_err(),
        "one free word"
    );
    let twice_free = Costs::from_counts(3, &[4; 16], &[4; 16]);
    assert!(twice_free.is_err(), "a word twice costs more than once");
    let per_word = c.tokens_per_word();
    assert!(per_word > 1.5 && per_word < 2.0, "{per_word}");
}

#[test]
fn prompts_are_built_to_exactly_the_asked_tokens() {
    let c = subword();
    let mut rng = StdRng::seed_from_u64(11);
    for asked in [2, 3, 17, 128, 1024, 4000] {
        let (text, built) = build(&mut rng, asked, Some(&c));
        assert_eq!(built, asked, "{text}");
        assert_eq!(cost_of(&text, &c), asked, "the text's own cost: {text}");
        let words = text.split(' ').count() as u64;
        if asked >= 128 {
            assert!(words < asked * 3 / 4, "fewer words than tokens: {words}");
        }
    }
}

#[test]
fn a_length_no_word_fits_ends_short_and_says_so() {
    // Every word costs two as the first: a one-token prompt cannot be built.
    let c = Costs::from_counts(0, &[2; 16], &[4; 16]).unwrap();
    let (text, built) = build(&mut StdRng::seed_from_u64(1), 1, Some(&c));
    assert_eq!((text.as_str(), built), ("", 0));
    let (text, built) = build(&mut StdRng::seed_from_u64(1), 5, Some(&c));
    assert_eq!(built, 4, "{text}");
}

#[test]
fn unit_costs_give_the_same_prompts_as_words() {
    let ones = Costs::from_counts(0, &[1; 16], &[2; 16]).unwrap();
    let (a, n) = build(&mut StdRng::seed_from_u64(5), 64, Some(&ones));
    let (b, m) = build(&mut StdRng::seed_from_u64(5), 64, None);
    assert_eq!((a, n), (b, m));
    assert_eq!(n, 64);
}

#[test]
fn tokenize_answers_are_read_by_count_or_tokens() {
    let count = |body: &[u8]| parse_count(&serde_json::from_slice(body).unwrap());
    assert_eq!(
        count(br#"{"count":7,"max_model_len":1024,"tokens":[1,2]}"#),
        Some(7)
    );
    assert_eq!(count(br#"{"tokens":[1,2,3]}"#), Some(3));
    assert_eq!(count(br#"{"detail":"Not Found"}"#), None);
}
