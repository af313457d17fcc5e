//! Sensor-local event sequence numbers that never repeat across restarts: each start reserves a new
//! epoch in the state directory, and the epoch fills the high 32 bits of the sequence.

use std::io::Write;

/// Offset within a run's sequence range where the uplink numbers the events it makes itself
/// (sensor health): the packet pipeline uses the numbers below it.
pub const UPLINK_OFFSET: u64 = 1 << 31;
use std::path::Path;

/// Reserve the next epoch and return the first sequence number of this run.
pub fn reserve(state_dir: &Path) -> std::io::Result<u64> {
    std::fs::create_dir_all(state_dir)?;
    let path = state_dir.join("epoch");
    let epoch: u64 = match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} does not hold a number", path.display()),
            )
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 1,
        Err(e) => return Err(e),
    };
    // Write the next epoch durably before using this one, so a crash cannot reuse it.
    let tmp = state_dir.join("epoch.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    writeln!(file, "{}", epoch + 1)?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(epoch << 32)
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_start_gets_a_new_range() {
        let dir = std::env::temp_dir().join(format!("canh-seq-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = super::reserve(&dir).expect("reserve");
        let b = super::reserve(&dir).expect("reserve");
        assert_eq!(a, 1 << 32);
        assert_eq!(b, 2 << 32);
        std::fs::write(dir.join("epoch"), "garbage").expect("write");
        assert!(super::reserve(&dir).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
