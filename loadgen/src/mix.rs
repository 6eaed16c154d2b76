//! Operation mixes: which operation each request is, drawn at random with fixed weights,
//! e.g. `borrow=70,get=20,list=5,return=5`.

use std::fmt;
use std::str::FromStr;

use rand::Rng;

/// Why a mix could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MixError {
    /// Nothing was given.
    #[error("empty mix: expected op=weight pairs like borrow=70,get=30")]
    Empty,
    /// A part is not `op=weight`.
    #[error("{0:?} is not op=weight")]
    BadEntry(String),
    /// The operation name is not known to the target.
    #[error("unknown operation {name:?}: {reason}")]
    UnknownOp {
        /// The name as given.
        name: String,
        /// The target's explanation, listing what it knows.
        reason: String,
    },
    /// The weight is not a whole number.
    #[error("weight {0:?} is not a whole number")]
    BadWeight(String),
    /// The same operation appears twice.
    #[error("operation {0:?} appears twice")]
    Duplicate(String),
    /// All weights are zero, so nothing could ever be drawn.
    #[error("all weights are zero")]
    ZeroTotal,
}

/// A weighted choice of operations. Weights are relative (they need not add up to 100);
/// an operation with weight 0 is never drawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix<O> {
    entries: Vec<(O, u32)>,
    total: u64,
}

impl<O: Copy + PartialEq + fmt::Display> Mix<O> {
    /// A mix of one operation only.
    pub fn single(op: O) -> Mix<O> {
        Mix {
            entries: vec![(op, 1)],
            total: 1,
        }
    }

    /// Builds a mix from `(op, weight)` pairs.
    pub fn from_weights(entries: Vec<(O, u32)>) -> Result<Mix<O>, MixError> {
        if entries.is_empty() {
            return Err(MixError::Empty);
        }
        for (index, (op, _)) in entries.iter().enumerate() {
            if entries[..index].iter().any(|(seen, _)| seen == op) {
                return Err(MixError::Duplicate(op.to_string()));
            }
        }
        let total = entries.iter().map(|&(_, weight)| u64::from(weight)).sum();
        if total == 0 {
            return Err(MixError::ZeroTotal);
        }
        Ok(Mix { entries, total })
    }

    /// Draws one operation with probability weight / total.
    pub fn pick<R: Rng + ?Sized>(&self, rng: &mut R) -> O {
        let mut ticket = rng.gen_range(0..self.total);
        for &(op, weight) in &self.entries {
            let weight = u64::from(weight);
            if ticket < weight {
                return op;
            }
            ticket -= weight;
        }
        // Unreachable: the ticket is below the sum of the weights. The last entry keeps
        // the function total without a panic path.
        self.entries[self.entries.len() - 1].0
    }

    /// The operations with their weights, in the order given.
    pub fn entries(&self) -> &[(O, u32)] {
        &self.entries
    }

    /// The share of `op` in percent.
    pub fn percent(&self, op: O) -> f64 {
        let weight: u64 = self
            .entries
            .iter()
            .filter(|(candidate, _)| *candidate == op)
            .map(|&(_, weight)| u64::from(weight))
            .sum();
        weight as f64 * 100.0 / self.total as f64
    }

    /// Whether `op` can be drawn at all.
    pub fn contains(&self, op: O) -> bool {
        self.entries
            .iter()
            .any(|&(candidate, weight)| candidate == op && weight > 0)
    }
}

impl<O: Copy + PartialEq + fmt::Display> fmt::Display for Mix<O> {
    /// `borrow` for a single operation, `borrow=70,get=30` for a real mix.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [(op, _)] = self.entries.as_slice() {
            return write!(f, "{op}");
        }
        for (index, (op, weight)) in self.entries.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{op}={weight}")?;
        }
        Ok(())
    }
}

impl<O> FromStr for Mix<O>
where
    O: Copy + PartialEq + fmt::Display + FromStr,
    O::Err: fmt::Display,
{
    type Err = MixError;

    /// Reads `op=weight[,op=weight...]`; spaces around names and weights are allowed.
    fn from_str(text: &str) -> Result<Mix<O>, MixError> {
        if text.trim().is_empty() {
            return Err(MixError::Empty);
        }
        let mut entries = Vec::new();
        for part in text.split(',') {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| MixError::BadEntry(part.trim().to_string()))?;
            let (name, weight) = (name.trim(), weight.trim());
            let op = name.parse::<O>().map_err(|e| MixError::UnknownOp {
                name: name.to_string(),
                reason: e.to_string(),
            })?;
            let weight = weight
                .parse::<u32>()
                .map_err(|_| MixError::BadWeight(weight.to_string()))?;
            entries.push((op, weight));
        }
        Mix::from_weights(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Op {
        A,
        B,
        C,
    }

    impl fmt::Display for Op {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(match self {
                Op::A => "a",
                Op::B => "b",
                Op::C => "c",
            })
        }
    }

    impl FromStr for Op {
        type Err = String;
        fn from_str(text: &str) -> Result<Op, String> {
            match text {
                "a" => Ok(Op::A),
                "b" => Ok(Op::B),
                "c" => Ok(Op::C),
                _ => Err("expected a, b or c".into()),
            }
        }
    }

    #[test]
    fn mixes_are_parsed_with_their_weights() {
        let mix: Mix<Op> = "a=70, b = 20,c=10".parse().unwrap();
        assert_eq!(mix.entries(), &[(Op::A, 70), (Op::B, 20), (Op::C, 10)]);
        assert_eq!(mix.percent(Op::A), 70.0);
        assert_eq!(mix.percent(Op::C), 10.0);
        assert_eq!(mix.to_string(), "a=70,b=20,c=10");
        let relative: Mix<Op> = "a=1,b=3".parse().unwrap();
        assert_eq!(relative.percent(Op::B), 75.0);
        assert!(!relative.contains(Op::C));
        assert_eq!(Mix::single(Op::B).to_string(), "b");
    }

    #[test]
    fn malformed_mixes_are_refused() {
        let parse = |text: &str| text.parse::<Mix<Op>>();
        assert_eq!(parse(""), Err(MixError::Empty));
        assert_eq!(parse("a"), Err(MixError::BadEntry("a".into())));
        assert_eq!(parse("a=1,b"), Err(MixError::BadEntry("b".into())));
        assert_eq!(parse("a=x"), Err(MixError::BadWeight("x".into())));
        assert_eq!(parse("a=-1"), Err(MixError::BadWeight("-1".into())));
        assert_eq!(parse("a=1,a=2"), Err(MixError::Duplicate("a".into())));
        assert_eq!(parse("a=0,b=0"), Err(MixError::ZeroTotal));
        assert_eq!(
            parse("d=1"),
            Err(MixError::UnknownOp {
                name: "d".into(),
                reason: "expected a, b or c".into()
            })
        );
    }

    #[test]
    fn draws_follow_the_weights() {
        let mix: Mix<Op> = "a=70,b=30,c=0".parse().unwrap();
        let mut rng = StdRng::seed_from_u64(7);
        let draws = 100_000;
        let mut counts = [0u32; 3];
        for _ in 0..draws {
            counts[mix.pick(&mut rng) as usize] += 1;
        }
        assert_eq!(counts[2], 0, "weight 0 is never drawn");
        let share_a = f64::from(counts[0]) / f64::from(draws);
        assert!((share_a - 0.7).abs() < 0.01, "share of a: {share_a}");
    }
}
