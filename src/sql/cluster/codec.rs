//! How tripwire's tables travel to a Ballista cluster inside a plan: the
//! in-memory tables a session registers (an empty table, the identity
//! index's `identities`, a run's rows being resolved, a flow's matches) as
//! Arrow IPC streams, one per partition; everything else as Ballista's own
//! codec does it (Parquet file lists, views, empty tables).

use std::io::Cursor;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use ballista_core::serde::BallistaLogicalExtensionCodec;
use datafusion::catalog::{MemTable, TableProvider};
use datafusion::common::TableReference;
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{AggregateUDF, Extension, LogicalPlan, ScalarUDF, WindowUDF};
use datafusion_proto::logical_plan::LogicalExtensionCodec;

/// Marks a table encoded by this codec (and its format's version).
const MEM_TABLE: &[u8] = b"tripwire.memtable.1\n";

/// Ballista's logical codec, plus in-memory tables.
#[derive(Debug, Default)]
pub struct LogicalCodec {
    ballista: BallistaLogicalExtensionCodec,
}

impl LogicalExtensionCodec for LogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        self.ballista.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.ballista.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        match buf.strip_prefix(MEM_TABLE) {
            Some(partitions) => Ok(Arc::new(decode_mem_table(partitions, schema)?)),
            None => self
                .ballista
                .try_decode_table_provider(buf, table_ref, schema, ctx),
        }
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        match node.downcast_ref::<MemTable>() {
            Some(table) => encode_mem_table(table, buf),
            None => self
                .ballista
                .try_encode_table_provider(table_ref, node, buf),
        }
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn FileFormatFactory>> {
        self.ballista.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> Result<()> {
        self.ballista.try_encode_file_format(buf, node)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        self.ballista.try_decode_udf(name, buf)
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.ballista.try_encode_udf(node, buf)
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        self.ballista.try_decode_udaf(name, buf)
    }

    fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.ballista.try_encode_udaf(node, buf)
    }

    fn try_decode_udwf(&self, name: &str, buf: &[u8]) -> Result<Arc<WindowUDF>> {
        self.ballista.try_decode_udwf(name, buf)
    }

    fn try_encode_udwf(&self, node: &WindowUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.ballista.try_encode_udwf(node, buf)
    }
}

/// `MEM_TABLE`, then per partition its IPC stream's length (u64, little
/// endian) and the stream.
fn encode_mem_table(table: &MemTable, buf: &mut Vec<u8>) -> Result<()> {
    buf.extend_from_slice(MEM_TABLE);
    let schema = table.schema();
    for partition in &table.batches {
        let batches = partition.try_read().map_err(|_| {
            DataFusionError::Internal("an in-memory table is being written to".into())
        })?;
        let stream = ipc_stream(&schema, &batches)?;
        buf.extend_from_slice(&(stream.len() as u64).to_le_bytes());
        buf.extend_from_slice(&stream);
    }
    Ok(())
}

fn ipc_stream(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let mut writer = StreamWriter::try_new(Vec::new(), schema)?;
    for batch in batches {
        writer.write(batch)?;
    }
    Ok(writer.into_inner()?)
}

fn decode_mem_table(mut bytes: &[u8], schema: SchemaRef) -> Result<MemTable> {
    let corrupt = || DataFusionError::Internal("a truncated in-memory table in a plan".into());
    let mut partitions = Vec::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes.split_first_chunk::<8>().ok_or_else(corrupt)?;
        let len = usize::try_from(u64::from_le_bytes(*len)).map_err(|_| corrupt())?;
        let (stream, rest) = rest.split_at_checked(len).ok_or_else(corrupt)?;
        let reader = StreamReader::try_new(Cursor::new(stream), None)?;
        partitions.push(reader.collect::<std::result::Result<Vec<_>, _>>()?);
        bytes = rest;
    }
    if partitions.is_empty() {
        partitions.push(Vec::new());
    }
    MemTable::try_new(schema, partitions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    #[test]
    fn in_memory_tables_survive_the_trip_partition_by_partition() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
        ]));
        let batch = |n: i64| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(vec![n, n + 1])),
                    Arc::new(StringArray::from(vec![Some("a"), None])),
                ],
            )
            .unwrap()
        };
        let table = MemTable::try_new(
            schema.clone(),
            vec![vec![batch(1), batch(3)], vec![], vec![batch(5)]],
        )
        .unwrap();
        let codec = LogicalCodec::default();
        let mut buf = Vec::new();
        let name = TableReference::bare("t");
        codec
            .try_encode_table_provider(&name, Arc::new(table), &mut buf)
            .unwrap();
        let ctx = TaskContext::default();
        let back = codec
            .try_decode_table_provider(&buf, &name, schema.clone(), &ctx)
            .unwrap();
        let back = back.downcast_ref::<MemTable>().unwrap();
        let rows: Vec<Vec<RecordBatch>> = back
            .batches
            .iter()
            .map(|p| p.try_read().unwrap().clone())
            .collect();
        assert_eq!(rows, vec![vec![batch(1), batch(3)], vec![], vec![batch(5)]]);
        let truncated = &buf[..buf.len() - 3];
        let error = codec
            .try_decode_table_provider(truncated, &name, schema, &ctx)
            .unwrap_err();
        assert!(error.to_string().contains("truncated"), "{error}");
    }
}
