//! The directory's part of an erasure, done last: the person's place in
//! recipient groups (a group left empty goes), other contacts' consents to
//! share with them, and their record with its indexes.

use herald_proto::v1::ErasedPart;
use herald_runtime::erase::serve::redis_store;

use super::ErasureDesk;

impl ErasureDesk {
    /// Removes `id` from the directory; what went, as one part.
    pub(super) async fn erase_directory(&self, id: &str) -> Result<ErasedPart, String> {
        let err = |e: herald_directory::contacts::DirectoryError| format!("directory: {e}");
        let mut removed = 0u64;
        let group_ids = self.groups.ids().await.map_err(err)?;
        for group in self
            .groups
            .get_many(&group_ids)
            .await
            .map_err(err)?
            .into_iter()
            .flatten()
            .filter(|g| g.members.iter().any(|m| m == id))
        {
            let mut g = group;
            g.members.retain(|m| m != id);
            if g.members.is_empty() {
                self.groups.remove(&g.id).await.map_err(err)?;
            } else {
                self.groups.put(&g).await.map_err(err)?;
            }
            removed += 1;
        }
        let ids = self.contacts.ids().await.map_err(err)?;
        for chunk in ids.chunks(500) {
            for c in self
                .contacts
                .get_many(chunk)
                .await
                .map_err(err)?
                .into_iter()
                .flatten()
                .filter(|c| c.id != id && c.sharing.iter().any(|s| s.with == id))
            {
                if self
                    .contacts
                    .forget_consents_with(&c.id, id)
                    .await
                    .map_err(err)?
                {
                    removed += 1;
                }
            }
        }
        if self.contacts.remove(id).await.map_err(err)? {
            removed += 1;
        }
        Ok(ErasedPart {
            service: "intake".into(),
            store: redis_store(herald_proto::keyspace::DIRECTORY.name),
            removed,
            error: String::new(),
        })
    }
}
