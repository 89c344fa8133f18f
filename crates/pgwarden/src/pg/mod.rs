//! PostgreSQL for the pool: the connector (how a server connection is opened, checked, reset and
//! closed), the pooled connection type, and the socket wrapper that tracks transaction state.

mod connection;
mod connector;
mod probe;
mod stream;

pub use connection::PgConnection;
pub use connector::{PgConnector, PgConnectorOptions};
pub use probe::PgLoginProbe;
