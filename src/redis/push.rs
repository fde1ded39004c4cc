//! Pushing a lane's batch: the one Redis round trip per batch.

use ::redis::RedisError;

use super::{Batch, RedisSink};

impl RedisSink {
    /// Sends one batch in one round trip. `Ok` means Redis acknowledged every command in it.
    pub async fn push(&self, batch: &Batch) -> Result<(), RedisError> {
        let mut conn = self.conn.clone();
        // The common case, no dead letters, sends the batch's own command without copying it.
        match (batch.messages() > 0, batch.dead_letters() > 0) {
            (true, false) => batch.push_command().query_async::<()>(&mut conn).await,
            (false, true) => {
                batch
                    .dead_letter_command()
                    .query_async::<()>(&mut conn)
                    .await
            }
            (true, true) => batch.pipeline().query_async::<()>(&mut conn).await,
            (false, false) => Ok(()),
        }
    }
}
