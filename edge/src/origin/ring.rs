//! Ketama-style consistent hashing: every server owns points on a 32-bit
//! ring in proportion to its weight; a key belongs to the first point at or
//! after its own hash. Points come from blake3 of the server's URL, so every
//! process with the same config agrees on which server owns a key.

/// Points of the heaviest server; the others get points in proportion to
/// their weight. 4096 points keep every share within about 5% of its weight.
const POINTS_PER_SERVER: u64 = 4096;

pub struct Ring {
    /// (position, server index), sorted by position.
    points: Vec<(u32, usize)>,
    servers: usize,
}

impl Ring {
    /// `servers` are (stable identity, weight) pairs.
    pub fn new<'a>(servers: impl IntoIterator<Item = (&'a str, u32)>) -> Ring {
        let servers: Vec<(&str, u32)> = servers.into_iter().collect();
        let heaviest = u64::from(servers.iter().map(|(_, w)| *w).max().unwrap_or(1).max(1));
        let mut points = Vec::new();
        let count = servers.len();
        for (index, (id, weight)) in servers.into_iter().enumerate() {
            let share = (POINTS_PER_SERVER * u64::from(weight.max(1))).div_ceil(heaviest);
            // Each blake3 digest gives eight 32-bit points.
            let digests = share.div_ceil(8);
            for n in 0..digests {
                let digest = blake3::hash(format!("{id}#{n}").as_bytes());
                for chunk in digest.as_bytes().chunks_exact(4) {
                    let position = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                    points.push((position, index));
                }
            }
        }
        points.sort_unstable();
        Ring {
            points,
            servers: count,
        }
    }

    /// Every server once, in ring order starting at the owner of `key_hash`:
    /// the first is the owner, the rest are the failover order.
    pub fn order(&self, key_hash: &[u8; 32]) -> Vec<usize> {
        let position = u32::from_be_bytes([key_hash[0], key_hash[1], key_hash[2], key_hash[3]]);
        let start = self.points.partition_point(|(p, _)| *p < position);
        let mut seen = vec![false; self.servers];
        let mut order = Vec::with_capacity(self.servers);
        for i in 0..self.points.len() {
            let (_, server) = self.points[(start + i) % self.points.len()];
            if !seen[server] {
                seen[server] = true;
                order.push(server);
                if order.len() == self.servers {
                    break;
                }
            }
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> [u8; 32] {
        *blake3::hash(format!("http://example.com/{i}").as_bytes()).as_bytes()
    }

    #[test]
    fn removing_a_server_moves_only_its_keys() {
        let ids: Vec<String> = (0..10).map(|i| format!("http://10.0.0.{i}:80")).collect();
        let all = Ring::new(ids.iter().map(|s| (s.as_str(), 1)));
        let without_3 = Ring::new(
            ids.iter()
                .enumerate()
                .filter(|(i, _)| *i != 3)
                .map(|(_, s)| (s.as_str(), 1)),
        );
        let mut moved = 0;
        for i in 0..100_000 {
            let before = all.order(&key(i))[0];
            let after = without_3.order(&key(i))[0];
            let after = if after >= 3 { after + 1 } else { after };
            if before != 3 {
                assert_eq!(before, after, "key {i} moved between surviving servers");
            } else {
                moved += 1;
            }
        }
        assert!((8_000..12_000).contains(&moved), "{moved} keys moved");
    }

    #[test]
    fn equal_servers_get_equal_shares_within_5_percent() {
        let ids: Vec<String> = (0..10).map(|i| format!("http://10.0.0.{i}:80")).collect();
        let ring = Ring::new(ids.iter().map(|s| (s.as_str(), 1)));
        let mut counts = [0u32; 10];
        for i in 0..100_000 {
            counts[ring.order(&key(i))[0]] += 1;
        }
        for (server, count) in counts.iter().enumerate() {
            let share = f64::from(*count) / 10_000.0;
            assert!(
                (0.95..=1.05).contains(&share),
                "server {server} got {count} keys: {counts:?}"
            );
        }
    }

    #[test]
    fn weights_hold() {
        let ring = Ring::new([("a", 1), ("b", 3)]);
        let mut counts = [0u32; 2];
        for i in 0..100_000 {
            counts[ring.order(&key(i))[0]] += 1;
        }
        let share_b = f64::from(counts[1]) / 100_000.0;
        assert!(
            (0.75 * 0.95..=0.75 * 1.05).contains(&share_b),
            "b got {share_b}"
        );
    }

    #[test]
    fn order_lists_every_server_once() {
        let ring = Ring::new([("a", 1), ("b", 1), ("c", 2)]);
        let mut order = ring.order(&key(7));
        order.sort_unstable();
        assert_eq!(order, vec![0, 1, 2]);
    }
}
