//! A session's tables made when a query first names them
//! (docs/architecture.md "Sessions"). A workspace session offers every
//! table and view (`events`, `quarantine`, `attempts`, `runs`,
//! `deliveries`, `contacts`…), but most queries read one or two: opening
//! every table's log and planning every view for each session was a third
//! of a trigger run's set-up. A [`LazySchema`] lists every name from the
//! start and builds a table on its first lookup, once; DataFusion looks
//! tables up (asynchronously) while planning a statement, so the build
//! happens inside that planning.
//!
//! A build gets a *planner*: a session of its own whose tables are this
//! schema's, plus hidden ones (the raw ledger under the ledger's views),
//! reached through a weak reference so that the schema and its planner do
//! not keep each other alive.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock, Weak};

use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::exec_err;
use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::SessionContext;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use tokio::sync::OnceCell;

use super::cluster::analyst_context;

/// Builds a table, given the schema's planner (to plan a view's SQL, or to
/// register a table's storage with the session's runtime).
pub type Build =
    Box<dyn Fn(SessionContext) -> BoxFuture<'static, Result<Arc<dyn TableProvider>>> + Send + Sync>;

/// A table as added to the schema: ready, or built when first named.
pub enum Table {
    Ready(Arc<dyn TableProvider>),
    Later(Build),
}

/// `e` as the engine's error, for a build's failure.
pub fn external(e: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// A build for a view: `sql` planned over the schema's tables.
pub fn view(sql: String) -> Build {
    Box::new(move |planner| {
        let sql = sql.clone();
        async move { Ok(planner.sql(&sql).await?.into_view()) }.boxed()
    })
}

/// One name's table: ready, or built at most once (a failed build is
/// tried again by the next lookup).
enum Entry {
    Ready(Arc<dyn TableProvider>),
    Later {
        made: OnceCell<Arc<dyn TableProvider>>,
        build: Build,
    },
}

impl Entry {
    fn new(table: Table) -> Entry {
        match table {
            Table::Ready(table) => Entry::Ready(table),
            Table::Later(build) => Entry::Later {
                made: OnceCell::new(),
                build,
            },
        }
    }

    async fn table(&self, schema: &LazySchema) -> Result<Arc<dyn TableProvider>> {
        match self {
            Entry::Ready(table) => Ok(table.clone()),
            Entry::Later { made, build } => {
                let built = made.get_or_try_init(|| async { build(schema.planner().await?).await });
                built.await.cloned()
            }
        }
    }

    /// The table, if it was made.
    fn made(&self) -> Option<Arc<dyn TableProvider>> {
        match self {
            Entry::Ready(table) => Some(table.clone()),
            Entry::Later { made, .. } => made.get().cloned(),
        }
    }
}

type Entries = RwLock<HashMap<String, Arc<Entry>>>;

/// A session's default schema whose tables may be built on first lookup.
pub struct LazySchema {
    me: Weak<LazySchema>,
    tables: Entries,
    /// Tables only the planner sees.
    hidden: Entries,
    planner: OnceCell<SessionContext>,
}

impl LazySchema {
    /// Makes an empty lazy schema `ctx`'s default schema (in place of the
    /// empty one it starts with).
    pub fn install(ctx: &SessionContext) -> Result<Arc<LazySchema>> {
        let schema = Arc::new_cyclic(|me| LazySchema {
            me: me.clone(),
            tables: Entries::default(),
            hidden: Entries::default(),
            planner: OnceCell::new(),
        });
        set_default_schema(ctx, schema.clone())?;
        Ok(schema)
    }

    /// Adds `table` as `name`, replacing a table of that name.
    pub fn add(&self, name: &str, table: Table) {
        write(&self.tables).insert(name.to_string(), Arc::new(Entry::new(table)));
    }

    /// Adds `table` as `name` for the planner's queries only.
    pub fn add_hidden(&self, name: &str, table: Table) {
        write(&self.hidden).insert(name.to_string(), Arc::new(Entry::new(table)));
    }

    /// The session builds run in, made on the first build.
    async fn planner(&self) -> Result<SessionContext> {
        let planner = self.planner.get_or_try_init(|| async {
            let ctx = analyst_context().map_err(external)?;
            let tables = PlannerSchema {
                of: self.me.clone(),
            };
            set_default_schema(&ctx, Arc::new(tables))?;
            Ok::<_, DataFusionError>(ctx)
        });
        planner.await.cloned()
    }

    /// `name`'s table, built if it is not yet; hidden tables too when asked.
    async fn lookup(
        &self,
        name: &str,
        with_hidden: bool,
    ) -> Result<Option<Arc<dyn TableProvider>>> {
        let entry = match read(&self.tables).get(name) {
            Some(entry) => Some(entry.clone()),
            None if with_hidden => read(&self.hidden).get(name).cloned(),
            None => None,
        };
        match entry {
            Some(entry) => entry.table(self).await.map(Some),
            None => Ok(None),
        }
    }
}

impl fmt::Debug for LazySchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<String> = read(&self.tables).keys().cloned().collect();
        names.sort();
        f.debug_struct("LazySchema")
            .field("tables", &names)
            .finish()
    }
}

#[async_trait::async_trait]
impl SchemaProvider for LazySchema {
    fn table_names(&self) -> Vec<String> {
        read(&self.tables).keys().cloned().collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        self.lookup(name, false).await
    }

    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> Result<Option<Arc<dyn TableProvider>>> {
        let mut tables = write(&self.tables);
        if tables.contains_key(&name) {
            return exec_err!("The table {name} already exists");
        }
        tables.insert(name, Arc::new(Entry::new(Table::Ready(table))));
        Ok(None)
    }

    fn deregister_table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let removed = write(&self.tables).remove(name);
        Ok(removed.and_then(|entry| entry.made()))
    }

    fn table_exist(&self, name: &str) -> bool {
        read(&self.tables).contains_key(name)
    }
}

/// The planner's schema: the lazy schema's tables and its hidden ones.
#[derive(Debug)]
struct PlannerSchema {
    of: Weak<LazySchema>,
}

impl PlannerSchema {
    fn schema(&self) -> Result<Arc<LazySchema>> {
        match self.of.upgrade() {
            Some(schema) => Ok(schema),
            None => exec_err!("the session this view belongs to is gone"),
        }
    }
}

#[async_trait::async_trait]
impl SchemaProvider for PlannerSchema {
    fn table_names(&self) -> Vec<String> {
        let Some(schema) = self.of.upgrade() else {
            return Vec::new();
        };
        let mut names = schema.table_names();
        names.extend(read(&schema.hidden).keys().cloned());
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        self.schema()?.lookup(name, true).await
    }

    fn table_exist(&self, name: &str) -> bool {
        self.of.upgrade().is_some_and(|schema| {
            schema.table_exist(name) || read(&schema.hidden).contains_key(name)
        })
    }
}

/// Puts `schema` in place of `ctx`'s default schema.
fn set_default_schema(ctx: &SessionContext, schema: Arc<dyn SchemaProvider>) -> Result<()> {
    let (catalog, name) = {
        let state = ctx.state_ref();
        let state = state.read();
        let options = &state.config_options().catalog;
        (
            options.default_catalog.clone(),
            options.default_schema.clone(),
        )
    };
    let Some(catalog) = ctx.catalog(&catalog) else {
        return exec_err!("the session has no catalog {catalog}");
    };
    catalog.register_schema(&name, schema)?;
    Ok(())
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::catalog::MemTable;

    use super::*;

    fn numbers(values: &[i64]) -> Arc<dyn TableProvider> {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let column = Arc::new(Int64Array::from(values.to_vec()));
        let batch = RecordBatch::try_new(schema.clone(), vec![column]).unwrap();
        Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap())
    }

    /// A build that counts its calls.
    fn counted(values: &'static [i64], calls: Arc<AtomicUsize>) -> Build {
        Box::new(move |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move { Ok(numbers(values)) }.boxed()
        })
    }

    async fn sum(ctx: &SessionContext, sql: &str) -> i64 {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let column = batches[0].column(0).as_any().downcast_ref::<Int64Array>();
        column.unwrap().value(0)
    }

    #[tokio::test]
    async fn a_table_is_built_once_when_first_named_and_never_if_not() {
        let ctx = crate::sql::new_context().unwrap();
        let schema = LazySchema::install(&ctx).unwrap();
        let (named, unnamed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        schema.add("a", Table::Later(counted(&[1, 2], named.clone())));
        schema.add("b", Table::Later(counted(&[5], unnamed.clone())));
        let mut names = schema.table_names();
        names.sort();
        assert_eq!(names, ["a", "b"], "a pending table is listed");
        assert_eq!(named.load(Ordering::SeqCst), 0, "nothing built up front");
        assert_eq!(sum(&ctx, "SELECT sum(n) FROM a").await, 3);
        assert_eq!(sum(&ctx, "SELECT sum(n) * 2 FROM a").await, 6);
        assert_eq!(named.load(Ordering::SeqCst), 1, "built once");
        assert_eq!(
            unnamed.load(Ordering::SeqCst),
            0,
            "never named, never built"
        );
    }

    #[tokio::test]
    async fn a_view_reads_hidden_tables_that_queries_cannot_name() {
        let ctx = crate::sql::new_context().unwrap();
        let schema = LazySchema::install(&ctx).unwrap();
        schema.add_hidden("raw", Table::Ready(numbers(&[1, 2, 3, 4])));
        let sql = "SELECT n FROM raw WHERE n % 2 = 0".to_string();
        schema.add("even", Table::Later(view(sql)));
        assert_eq!(sum(&ctx, "SELECT sum(n) FROM even").await, 6);
        let hidden = ctx.sql("SELECT * FROM raw").await.unwrap_err();
        assert!(hidden.to_string().contains("raw"), "{hidden}");
        assert!(!schema.table_names().contains(&"raw".to_string()));
    }

    #[tokio::test]
    async fn registering_over_a_name_fails_and_replacing_works() {
        let ctx = crate::sql::new_context().unwrap();
        let schema = LazySchema::install(&ctx).unwrap();
        schema.add("a", Table::Later(view("SELECT 1::bigint AS n".into())));
        let taken = ctx.register_table("a", numbers(&[7])).unwrap_err();
        assert!(taken.to_string().contains("already exists"), "{taken}");
        crate::sql::replace_table(&ctx, "a", numbers(&[7])).unwrap();
        assert_eq!(sum(&ctx, "SELECT sum(n) FROM a").await, 7);
    }

    #[tokio::test]
    async fn a_failed_build_fails_the_query_naming_it_and_is_tried_again() {
        let ctx = crate::sql::new_context().unwrap();
        let schema = LazySchema::install(&ctx).unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let tries = calls.clone();
        schema.add(
            "flaky",
            Table::Later(Box::new(move |_| {
                let first = tries.fetch_add(1, Ordering::SeqCst) == 0;
                async move {
                    match first {
                        true => exec_err!("cannot open flaky: disk on fire"),
                        false => Ok(numbers(&[4])),
                    }
                }
                .boxed()
            })),
        );
        schema.add("fine", Table::Ready(numbers(&[1])));
        assert_eq!(sum(&ctx, "SELECT sum(n) FROM fine").await, 1);
        let failed = ctx.sql("SELECT * FROM flaky").await.unwrap_err();
        assert!(failed.to_string().contains("disk on fire"), "{failed}");
        assert_eq!(sum(&ctx, "SELECT sum(n) FROM flaky").await, 4);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
