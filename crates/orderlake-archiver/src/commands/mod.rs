//! One module per subcommand.

pub mod generate;
pub mod import;
pub mod maintain;
pub mod replay;
pub mod run;
pub mod status;

use orderlake_archive::TableLocation;

use crate::config::ArchiverConfig;
use crate::error::CliError;

pub fn table_location(c: &ArchiverConfig) -> Result<TableLocation, CliError> {
    Ok(c.archive.location()?)
}
