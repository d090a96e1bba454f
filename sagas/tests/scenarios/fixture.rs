use sqlx::{Connection, PgConnection};
use ticketing_eventstore::ScratchDatabase;

use crate::common::Fixture;

#[tokio::test]
async fn a_finished_scenario_leaves_no_database_behind() {
    // Arrange: a scenario's fixture, on a database of its own.
    let fixture = Fixture::new().await;
    let name: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(fixture.db.pool())
        .await
        .unwrap();

    // Act: the scenario ends.
    drop(fixture);

    // Assert: its database is gone, so repeated test runs do not pile
    // migrated databases up on the developer's server.
    let mut admin = PgConnection::connect(&ScratchDatabase::admin_url())
        .await
        .unwrap();
    let left: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert!(!left, "database {name} is still there");
}
