//! A small, seedable, serializable random number generator (SplitMix64).
//!
//! The engine draws all of its randomness (sampling noise, data shuffles, the synthetic
//! world) from this instead of libtorch's global generator: the state is one `u64`, so it
//! is independent per actor thread and trivially saved in a checkpoint for exact resume.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// The full state; `Rng::new(rng.state())` continues the same stream.
    pub fn state(&self) -> u64 {
        self.state
    }

    /// An independent stream for `keys` under `seed`, e.g. (a run's seed, a prompt's index
    /// in the run, a sample's index): each key is folded into the state through SplitMix64's
    /// output function, so neighbouring keys give unrelated streams, and a stream depends
    /// only on its own keys, never on which other streams exist or in which order they draw.
    pub fn stream(seed: u64, keys: &[u64]) -> Rng {
        let state = keys.iter().fold(seed, |state, &key| {
            Rng::new(state ^ key.wrapping_mul(0xD6E8_FEB8_6659_FD93)).next_u64()
        });
        Rng::new(state)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1]: never 0, so inverse-CDF sampling never picks a zero-mass token.
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Uniform integer in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "Rng::below(0)");
        // Multiply-shift keeps the bias below 2^-64 * n, negligible for our sizes.
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    pub fn choose<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_reference_values() {
        // First outputs of SplitMix64 seeded with 1234567 (reference implementation by Vigna).
        let mut r = Rng::new(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
    }

    #[test]
    fn uniform_in_half_open_unit_interval_and_resumable() {
        let mut r = Rng::new(7);
        for _ in 0..10_000 {
            let u = r.uniform();
            assert!(u > 0.0 && u <= 1.0);
        }
        let mut copy = Rng::new(r.state());
        assert_eq!(copy.next_u64(), r.next_u64());
    }

    #[test]
    fn streams_depend_on_their_keys_only() {
        let draws = |seed, keys: &[u64]| {
            let mut r = Rng::stream(seed, keys);
            [r.next_u64(), r.next_u64()]
        };
        assert_eq!(draws(7, &[3, 1]), draws(7, &[3, 1]));
        let all = [
            draws(7, &[3, 1]),
            draws(7, &[1, 3]),
            draws(7, &[3, 0]),
            draws(7, &[4, 1]),
            draws(8, &[3, 1]),
            draws(7, &[3]),
            draws(7, &[]),
        ];
        for i in 0..all.len() {
            for j in 0..i {
                assert_ne!(all[i], all[j], "streams {i} and {j}");
            }
        }
        // No key is the plain seeded stream.
        assert_eq!(draws(7, &[])[0], Rng::new(7).next_u64());
    }

    #[test]
    fn below_and_shuffle_cover_the_range() {
        let mut r = Rng::new(3);
        let mut seen = [0usize; 5];
        for _ in 0..5000 {
            seen[r.below(5)] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800 && c < 1200), "{seen:?}");
        let mut v: Vec<usize> = (0..10).collect();
        r.shuffle(&mut v);
        let mut sorted = v.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        assert_ne!(v, sorted);
    }
}
