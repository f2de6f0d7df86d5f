//! Query results as text: an aligned table for people, CSV or JSON lines
//! for programs (`tripwire query --format`).

use arrow::array::RecordBatch;

/// How `tripwire query` prints its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Csv,
    /// One JSON object per row (JSON lines).
    Json,
}

/// Renders `batches` in `format`.
pub fn render(
    batches: &[RecordBatch],
    format: OutputFormat,
) -> Result<String, arrow::error::ArrowError> {
    match format {
        OutputFormat::Table => Ok(format!(
            "{}\n",
            arrow::util::pretty::pretty_format_batches(batches)?
        )),
        OutputFormat::Csv => {
            let mut out = Vec::new();
            {
                let mut writer = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out);
                for batch in batches {
                    writer.write(batch)?;
                }
            }
            Ok(String::from_utf8_lossy(&out).into_owned())
        }
        OutputFormat::Json => {
            let mut out = Vec::new();
            {
                let mut writer = arrow::json::LineDelimitedWriter::new(&mut out);
                for batch in batches {
                    writer.write(batch)?;
                }
                writer.finish()?;
            }
            Ok(String::from_utf8_lossy(&out).into_owned())
        }
    }
}
