//! A person owned wholly by one source that is not the LAS keeps that owner's name alone in
//! `owners` (`broker`) instead of the map `{"*":"broker"}`: 8 bytes a pupil, on nearly every
//! row (issue 17). Rows runs write from now on have the short form (`store::owners`); up
//! shortens the rows already there, down gives them the map again. Both forms read the same.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// `{"*":"` before the name and `"}` after it.
const OPEN: usize = 6;
const CLOSE: usize = 2;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // A map of one entry, `*`: no comma, and a name of letters only.
        m.get_connection()
            .execute_unprepared(&format!(
                "UPDATE person SET owners = substr(owners, {}, length(owners) - {}) \
                 WHERE owners LIKE '{{\"*\":\"%\"}}' AND owners NOT LIKE '%,%'",
                OPEN + 1,
                OPEN + CLOSE
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.get_connection()
            .execute_unprepared(
                "UPDATE person SET owners = '{\"*\":\"' || owners || '\"}' \
                 WHERE owners NOT LIKE '{%'",
            )
            .await?;
        Ok(())
    }
}
