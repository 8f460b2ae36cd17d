//! "Did you mean ...?": the nearest known name (input: a misspelt name and candidates; output: a candidate).

/// The candidate nearest to `name` by Damerau–Levenshtein distance (optimal string alignment:
/// insertions, deletions, substitutions and swaps of two adjacent characters each cost 1), compared
/// case-insensitively.
///
/// A candidate is accepted when its distance is at most `max(1, len / 3)`, `len` being the number of
/// characters of `name`; among equally near candidates the first one wins. `None` when nothing is
/// near enough.
///
/// ```
/// use model_compiler::suggest::did_you_mean;
/// assert_eq!(did_you_mean("rleu", ["sigmoid", "relu", "tanh"]), Some("relu"));
/// assert_eq!(did_you_mean("xyz", ["sigmoid", "relu", "tanh"]), None);
/// ```
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let name: Vec<char> = name.chars().flat_map(char::to_lowercase).collect();
    let limit = (name.len() / 3).max(1);
    let mut best: Option<(usize, &'a str)> = None;
    for candidate in candidates {
        let lowered: Vec<char> = candidate.chars().flat_map(char::to_lowercase).collect();
        let d = distance(&name, &lowered);
        if d <= limit && best.is_none_or(|(best_d, _)| d < best_d) {
            best = Some((d, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

/// Optimal-string-alignment distance between `a` and `b`, computed with three rolling rows.
fn distance(a: &[char], b: &[char]) -> usize {
    // Row `i` holds the distances between the first `i` characters of `a` and every prefix of `b`.
    let mut before_prev: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur: Vec<usize> = vec![0; b.len() + 1];
    for (i, &ca) in a.iter().enumerate() {
        if let Some(first) = cur.first_mut() {
            *first = i + 1;
        }
        for (j, &cb) in b.iter().enumerate() {
            let deletion = prev.get(j + 1).map_or(usize::MAX, |d| d + 1);
            let insertion = cur.get(j).map_or(usize::MAX, |d| d + 1);
            let substitution = prev.get(j).map_or(usize::MAX, |d| d + usize::from(ca != cb));
            let mut best = deletion.min(insertion).min(substitution);
            let swapped = i > 0 && j > 0 && a.get(i - 1) == Some(&cb) && b.get(j - 1) == Some(&ca) && ca != cb;
            if swapped {
                if let Some(d) = before_prev.get(j - 1) {
                    best = best.min(d + 1);
                }
            }
            if let Some(slot) = cur.get_mut(j + 1) {
                *slot = best;
            }
        }
        std::mem::swap(&mut before_prev, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev.last().copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACTIVATIONS: [&str; 5] = ["linear", "relu", "sigmoid", "tanh", "softmax"];
    const LAYERS: [&str; 4] = ["Dense", "Concatenate", "Conv2D", "Average"];

    fn dist(a: &str, b: &str) -> usize {
        let a: Vec<char> = a.chars().collect();
        let b: Vec<char> = b.chars().collect();
        distance(&a, &b)
    }

    #[test]
    fn distance_counts_edits_and_adjacent_swaps() {
        assert_eq!(dist("", ""), 0);
        assert_eq!(dist("", "abc"), 3);
        assert_eq!(dist("abc", ""), 3);
        assert_eq!(dist("kitten", "sitting"), 3);
        assert_eq!(dist("rleu", "relu"), 1);
        assert_eq!(dist("ab", "ba"), 1);
        assert_eq!(dist("ca", "abc"), 3);
    }

    #[test]
    fn suggests_swapped_letters() {
        assert_eq!(did_you_mean("rleu", ACTIVATIONS), Some("relu"));
    }

    #[test]
    fn suggests_extra_letter() {
        assert_eq!(did_you_mean("Concatentate", LAYERS), Some("Concatenate"));
    }

    #[test]
    fn suggests_nothing_when_far() {
        assert_eq!(did_you_mean("xyz", ACTIVATIONS), None);
        assert_eq!(did_you_mean("xyz", LAYERS), None);
        assert_eq!(did_you_mean("anything", std::iter::empty()), None);
    }

    #[test]
    fn ignores_case() {
        assert_eq!(did_you_mean("dense", LAYERS), Some("Dense"));
        assert_eq!(did_you_mean("conv2d", LAYERS), Some("Conv2D"));
    }

    #[test]
    fn ties_go_to_the_first_candidate() {
        assert_eq!(did_you_mean("bat", ["cat", "hat"]), Some("cat"));
        assert_eq!(did_you_mean("bat", ["hat", "cat"]), Some("hat"));
    }

    #[test]
    fn limit_grows_with_length() {
        // 4 characters: one edit allowed.
        assert_eq!(did_you_mean("rel", ACTIVATIONS), Some("relu"));
        assert_eq!(did_you_mean("reul_", ACTIVATIONS), None);
        // 7 characters: two edits allowed.
        assert_eq!(did_you_mean("sigmiod", ACTIVATIONS), Some("sigmoid"));
        assert_eq!(did_you_mean("smgiodx", ACTIVATIONS), None);
    }
}
