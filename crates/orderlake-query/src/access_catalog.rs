//! The access rules ([`crate::access`]) applied to one user's session: its catalogs list only
//! the tables the user may read, a hidden table named in a query is refused, a table with hidden
//! columns is seen without them, and the metadata listings of the `system` catalog keep only
//! the rows about what the user may see.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use arrow::array::{Array as _, AsArray as _, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemTable, SchemaProvider, Session, TableProvider,
};
use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::{Expr, LogicalPlan, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;

use crate::QueryError;
use crate::access::{AccessPolicy, TableAccess};

/// A hidden column a query named: what the engine reports instead of "no such field".
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct HiddenColumn {
    pub table: String,
    pub column: String,
}

/// Whose view of the catalogs a wrapper gives, and where it records the hidden columns of the
/// tables it handed out.
#[derive(Debug, Clone)]
struct Viewer {
    policy: Arc<AccessPolicy>,
    user: String,
    hidden: Arc<Mutex<BTreeSet<HiddenColumn>>>,
}

/// One user's view of the catalogs.
#[derive(Debug)]
pub(crate) struct UserCatalogs {
    inner: Arc<dyn CatalogProviderList>,
    viewer: Viewer,
}

impl UserCatalogs {
    pub(crate) fn new(
        inner: Arc<dyn CatalogProviderList>,
        policy: Arc<AccessPolicy>,
        user: &str,
    ) -> Self {
        Self {
            inner,
            viewer: Viewer {
                policy,
                user: user.to_owned(),
                hidden: Arc::default(),
            },
        }
    }

    /// The hidden columns of the tables this session resolved, to tell a query that named one
    /// that it may not read it.
    pub(crate) fn hidden_columns(&self) -> Arc<Mutex<BTreeSet<HiddenColumn>>> {
        Arc::clone(&self.viewer.hidden)
    }
}

impl CatalogProviderList for UserCatalogs {
    fn register_catalog(
        &self,
        _name: String,
        _catalog: Arc<dyn CatalogProvider>,
    ) -> Option<Arc<dyn CatalogProvider>> {
        // Sessions never register catalogs (DDL is refused before planning).
        None
    }

    fn catalog_names(&self) -> Vec<String> {
        self.inner.catalog_names()
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        Some(Arc::new(UserCatalog {
            inner: self.inner.catalog(name)?,
            name: name.to_owned(),
            viewer: self.viewer.clone(),
        }))
    }
}

#[derive(Debug)]
struct UserCatalog {
    inner: Arc<dyn CatalogProvider>,
    name: String,
    viewer: Viewer,
}

impl CatalogProvider for UserCatalog {
    fn schema_names(&self) -> Vec<String> {
        self.inner.schema_names()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        Some(Arc::new(UserSchema {
            inner: self.inner.schema(name)?,
            catalog: self.name.clone(),
            name: name.to_owned(),
            viewer: self.viewer.clone(),
        }))
    }
}

#[derive(Debug)]
struct UserSchema {
    inner: Arc<dyn SchemaProvider>,
    catalog: String,
    name: String,
    viewer: Viewer,
}

impl UserSchema {
    fn access(&self, table: &str) -> TableAccess {
        self.viewer
            .policy
            .table(&self.viewer.user, &self.catalog, &self.name, table)
    }
}

#[async_trait]
impl SchemaProvider for UserSchema {
    fn table_names(&self) -> Vec<String> {
        self.inner
            .table_names()
            .into_iter()
            .filter(|t| self.access(t) != TableAccess::Hidden)
            .collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let hidden_columns = match self.access(name) {
            TableAccess::Hidden => {
                if !self.inner.table_exist(name) {
                    return Ok(None);
                }
                return Err(DataFusionError::External(Box::new(QueryError::forbidden(
                    format!(
                        "Access Denied: Cannot select from table {}.{}.{name}",
                        self.catalog, self.name
                    ),
                ))));
            }
            TableAccess::Readable { hidden_columns } => hidden_columns,
        };
        let Some(table) = self.inner.table(name).await? else {
            return Ok(None);
        };
        if let Some(listing) = table.downcast_ref::<MetadataTable>() {
            let visible = listing.visible_to(&self.viewer.policy, &self.viewer.user)?;
            return Ok(Some(Arc::new(visible)));
        }
        if hidden_columns.is_empty() {
            return Ok(Some(table));
        }
        let qualified = format!("{}.{}.{name}", self.catalog, self.name);
        let mut hidden = self.viewer.hidden.lock().expect("hidden columns lock");
        for column in &hidden_columns {
            hidden.insert(HiddenColumn {
                table: qualified.clone(),
                column: column.clone(),
            });
        }
        Ok(Some(Arc::new(ColumnsHidden::new(table, &hidden_columns))))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.access(name) != TableAccess::Hidden && self.inner.table_exist(name)
    }
}

/// A table seen without some of its columns.
#[derive(Debug)]
struct ColumnsHidden {
    inner: Arc<dyn TableProvider>,
    schema: SchemaRef,
    /// For each visible column, its index in the inner table.
    visible: Vec<usize>,
}

impl ColumnsHidden {
    fn new(inner: Arc<dyn TableProvider>, hidden: &BTreeSet<String>) -> Self {
        let full = inner.schema();
        let visible: Vec<usize> = (0..full.fields().len())
            .filter(|i| !hidden.contains(&full.field(*i).name().to_lowercase()))
            .collect();
        let schema = Arc::new(Schema::new_with_metadata(
            visible
                .iter()
                .map(|i| full.field(*i).clone())
                .collect::<Vec<_>>(),
            full.metadata().clone(),
        ));
        Self {
            inner,
            schema,
            visible,
        }
    }
}

#[async_trait]
impl TableProvider for ColumnsHidden {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    // A view's own plan would bring its hidden columns back: it is scanned instead.
    fn get_logical_plan(&'_ self) -> Option<Cow<'_, LogicalPlan>> {
        None
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let projection: Vec<usize> = match projection {
            Some(p) => p.iter().map(|i| self.visible[*i]).collect(),
            None => self.visible.clone(),
        };
        self.inner
            .scan(state, Some(&projection), filters, limit)
            .await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Filters name visible columns only, which the inner table has under the same names.
        self.inner.supports_filters_pushdown(filters)
    }
}

/// A metadata listing of the `system` catalog (`system.jdbc.*`, Trino's `information_schema`):
/// one batch of rows naming catalogs, schemas, tables and columns, which a user's session sees
/// filtered to what the user may read.
#[derive(Debug)]
pub(crate) struct MetadataTable {
    batch: RecordBatch,
    inner: MemTable,
}

impl MetadataTable {
    pub(crate) fn new(batch: RecordBatch) -> Result<Self> {
        let inner = MemTable::try_new(batch.schema(), vec![vec![batch.clone()]])?;
        Ok(Self { batch, inner })
    }

    /// The rows about tables and columns `user` may read.
    fn visible_to(&self, policy: &AccessPolicy, user: &str) -> Result<MemTable> {
        let column = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| self.batch.column_by_name(n))
                .and_then(|c| c.as_string_opt::<i32>().cloned())
        };
        let catalogs = column(&["table_cat", "table_catalog"]);
        let schemas = column(&["table_schem", "table_schema"]);
        let tables = column(&["table_name"]);
        let columns = column(&["column_name"]);
        let batch = match (catalogs, schemas, tables) {
            (Some(catalogs), Some(schemas), Some(tables)) => {
                let keep: BooleanArray = (0..self.batch.num_rows())
                    .map(|row| {
                        if catalogs.is_null(row) || schemas.is_null(row) || tables.is_null(row) {
                            return Some(true);
                        }
                        let access = policy.table(
                            user,
                            catalogs.value(row),
                            schemas.value(row),
                            tables.value(row),
                        );
                        Some(match access {
                            TableAccess::Hidden => false,
                            TableAccess::Readable { hidden_columns } => {
                                columns.as_ref().is_none_or(|c| {
                                    c.is_null(row)
                                        || !hidden_columns.contains(&c.value(row).to_lowercase())
                                })
                            }
                        })
                    })
                    .collect();
                filter_record_batch(&self.batch, &keep)?
            }
            _ => self.batch.clone(),
        };
        MemTable::try_new(batch.schema(), vec![vec![batch]])
    }
}

#[async_trait]
impl TableProvider for MetadataTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.inner.scan(state, projection, filters, limit).await
    }
}
