//! Rows of a rollout batch grouped by length for the forward passes that score them.
//!
//! A batch is left-padded to its longest prompt and right-padded to its longest response,
//! and with EOS the lengths are ragged: on the embedded world's PPO prompts a batch of 32
//! pads about 45 real tokens a row to over 100 columns. One forward per group of rows of
//! similar length, each cut to the columns its own longest prompt and response need, does
//! the same arithmetic on the real tokens (positions come from the mask, so cutting
//! left padding moves nothing) for far fewer padded ones. Only float rounding differs.

/// Rows in one forward, and the columns it keeps: the last `prompt` prompt columns and
/// the first `response` response columns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub rows: Vec<i64>,
    pub prompt: i64,
    pub response: i64,
}

/// What a forward costs beyond its rows, in rows of its width: it keeps tiny groups from
/// paying for themselves with the matmul efficiency they lose.
const OVERHEAD_ROWS: i64 = 4;

/// The groups of rows whose real lengths are `prompts[i]` and `responses[i]` that cost
/// the least, a group of g rows as wide as w columns costing `(g + OVERHEAD_ROWS) * w`:
/// rows sorted by total length (ties by index, so the grouping depends on the lengths
/// alone), split where dynamic programming finds it cheapest. Every prompt keeps at least
/// one column (the position that chooses the first response token).
pub fn length_groups(prompts: &[i64], responses: &[i64]) -> Vec<Group> {
    assert_eq!(prompts.len(), responses.len(), "length_groups: rows");
    let rows = prompts.len();
    let mut order: Vec<usize> = (0..rows).collect();
    order.sort_by_key(|&i| (prompts[i] + responses[i], i));
    // best[j]: the cheapest grouping of the first j sorted rows, and where its last group
    // starts.
    let mut best: Vec<(i64, usize)> = vec![(0, 0); rows + 1];
    for j in 1..=rows {
        let (mut p, mut r) = (1, 0);
        best[j] = (i64::MAX, 0);
        for i in (0..j).rev() {
            p = p.max(prompts[order[i]]);
            r = r.max(responses[order[i]]);
            let cost = best[i].0 + (j as i64 - i as i64 + OVERHEAD_ROWS) * (p + r);
            if cost < best[j].0 {
                best[j] = (cost, i);
            }
        }
    }
    let mut groups = Vec::new();
    let mut end = rows;
    while end > 0 {
        let start = best[end].1;
        let members = &order[start..end];
        groups.push(Group {
            rows: members.iter().map(|&i| i as i64).collect(),
            prompt: members
                .iter()
                .map(|&i| prompts[i])
                .max()
                .unwrap_or(1)
                .max(1),
            response: members.iter().map(|&i| responses[i]).max().unwrap_or(0),
        });
        end = start;
    }
    groups.reverse();
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alike_rows_share_a_forward_and_outliers_get_their_own() {
        // Cost with one group: (6 + 4) * (50 + 40) = 900. Split as below: (5 + 4) * (10 +
        // 5) + (1 + 4) * (50 + 40) = 135 + 450 = 585, the cheapest.
        let prompts = [10, 8, 50, 9, 10, 7];
        let responses = [5, 5, 40, 3, 4, 5];
        let groups = length_groups(&prompts, &responses);
        assert_eq!(
            groups,
            vec![
                Group {
                    rows: vec![3, 5, 1, 4, 0],
                    prompt: 10,
                    response: 5
                },
                Group {
                    rows: vec![2],
                    prompt: 50,
                    response: 40
                },
            ]
        );
    }

    #[test]
    fn equal_rows_stay_one_group_and_every_row_is_placed_once() {
        let groups = length_groups(&[6; 5], &[3; 5]);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].rows, vec![0, 1, 2, 3, 4]);
        let prompts: Vec<i64> = (0..40).map(|i| 1 + (i * 37) % 23).collect();
        let responses: Vec<i64> = (0..40).map(|i| (i * 11) % 17).collect();
        let mut seen: Vec<i64> = length_groups(&prompts, &responses)
            .into_iter()
            .flat_map(|g| {
                for &row in &g.rows {
                    assert!(prompts[row as usize] <= g.prompt);
                    assert!(responses[row as usize] <= g.response);
                }
                g.rows
            })
            .collect();
        seen.sort();
        assert_eq!(seen, (0..40).collect::<Vec<i64>>());
        assert!(length_groups(&[], &[]).is_empty());
    }
}
