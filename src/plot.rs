//! PNG pictures (plotters, bitmap backend) with a bundled font, so that they
//! render the same on a machine without any fonts installed.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

use crate::persist;

/// DejaVu Sans (Bitstream Vera licence, `assets/fonts/LICENSE-DejaVu.txt`).
const FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");
pub const FONT_NAME: &str = "sans-serif";

/// Registers the bundled font once for plotters' text.
pub fn ensure_font() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // The font is bundled and valid: a failure is a packaging bug.
        plotters::style::register_font(FONT_NAME, FontStyle::Normal, FONT)
            .map_err(|_| "bad font")
            .expect("the bundled font loads");
    });
}

/// Why a picture could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("{}: cannot draw: {detail}", path.display())]
    Draw { path: std::path::PathBuf, detail: String },
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Renders with `draw` onto a `width × height` white canvas and writes the
/// PNG to `path` atomically.
pub fn render_png(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend, plotters::coord::Shift>) -> Result<(), String>,
) -> Result<(), PlotError> {
    let png = png_bytes(size, draw).map_err(|detail| PlotError::Draw {
        path: path.to_owned(),
        detail,
    })?;
    persist::write_atomic(path, &png).map_err(|source| PlotError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Renders with `draw` onto a `width × height` white canvas: the PNG file's bytes.
pub fn png_bytes(
    (width, height): (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend, plotters::coord::Shift>) -> Result<(), String>,
) -> Result<Vec<u8>, String> {
    ensure_font();
    let mut pixels = vec![0u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        draw(&root)?;
        root.present().map_err(|e| e.to_string())?;
    }
    let mut png = Vec::new();
    let encoder = image::codecs::png::PngEncoder::new(&mut png);
    image::ImageEncoder::write_image(encoder, &pixels, width, height, image::ExtendedColorType::Rgb8)
        .map_err(|e| e.to_string())?;
    Ok(png)
}

/// A confusion matrix as a heat map of row-normalised recall, with counts.
pub fn confusion_matrix(
    path: &Path,
    labels: &[String],
    confusion: &[Vec<usize>],
    title: &str,
) -> Result<(), PlotError> {
    let cells: Vec<Vec<Option<Cell>>> = confusion
        .iter()
        .map(|row| {
            let total: usize = row.iter().sum();
            row.iter()
                .map(|&count| {
                    let share = if total == 0 { 0.0 } else { count as f64 / total as f64 };
                    Some(Cell {
                        value: share,
                        text: count.to_string(),
                    })
                })
                .collect()
        })
        .collect();
    let n = labels.len() as u32;
    let layout = GridLayout {
        size: (170 + 64 * n, 150 + 64 * n),
        label_areas: (55, 95),
        font: 16,
    };
    grid(path, title, ("predicted", "true"), labels, labels, &cells, &layout)
}

/// One line of a line chart: name and `(x, y, ±y)` points.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64, f64)>,
}

/// A line chart with error bars; `x_ticks` name the x positions shown.
pub fn lines(
    path: &Path,
    title: &str,
    (x_desc, y_desc): (&str, &str),
    x_ticks: &[(f64, String)],
    y_range: std::ops::Range<f64>,
    series: &[Series],
) -> Result<(), PlotError> {
    render_png(path, (900, 560), |root| {
        let err = |e: &dyn std::fmt::Display| e.to_string();
        let x_min = x_ticks.iter().map(|t| t.0).fold(f64::INFINITY, f64::min) - 0.5;
        let x_max = x_ticks.iter().map(|t| t.0).fold(f64::NEG_INFINITY, f64::max) + 0.5;
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT_NAME, 22))
            .margin(15)
            .x_label_area_size(50)
            .y_label_area_size(60)
            .build_cartesian_2d(x_min..x_max, y_range.clone())
            .map_err(|e| err(&e))?;
        let tick_name = |v: &f64| {
            x_ticks
                .iter()
                .find(|(x, _)| (x - v).abs() < 1e-6)
                .map(|(_, name)| name.clone())
                .unwrap_or_default()
        };
        chart
            .configure_mesh()
            .x_labels(((x_max - x_min) * 2.0) as usize + 1)
            .x_label_formatter(&tick_name)
            .y_label_formatter(&|v| format!("{v:.0}"))
            .x_desc(x_desc)
            .y_desc(y_desc)
            .label_style((FONT_NAME, 15))
            .axis_desc_style((FONT_NAME, 16))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|e| err(&e))?;
        for (i, line) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let style = ShapeStyle::from(color).stroke_width(3);
            chart
                .draw_series(LineSeries::new(line.points.iter().map(|&(x, y, _)| (x, y)), style))
                .map_err(|e| err(&e))?
                .label(line.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], ShapeStyle::from(color).stroke_width(3))
                });
            chart
                .draw_series(
                    line.points.iter().map(|&(x, y, e)| {
                        ErrorBar::new_vertical(x, y - e, y, y + e, ShapeStyle::from(color).filled(), 8)
                    }),
                )
                .map_err(|e| err(&e))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT_NAME, 15))
            .position(SeriesLabelPosition::LowerLeft)
            .draw()
            .map_err(|e| err(&e))?;
        Ok(())
    })
}

/// A heat map of values in `[0, 1]` with the value written in each cell.
pub fn heatmap(
    path: &Path,
    title: &str,
    axes: (&str, &str),
    columns: &[String],
    rows: &[String],
    values: &[Vec<Option<f64>>],
) -> Result<(), PlotError> {
    let cells: Vec<Vec<Option<Cell>>> = values
        .iter()
        .map(|row| {
            row.iter()
                .map(|value| {
                    value.map(|value| Cell {
                        value,
                        text: format!("{:.1}", 100.0 * value),
                    })
                })
                .collect()
        })
        .collect();
    let layout = GridLayout {
        size: (230 + 90 * columns.len() as u32, 150 + 36 * rows.len() as u32),
        label_areas: (45, 150),
        font: 14,
    };
    grid(path, title, axes, columns, rows, &cells, &layout)
}

/// One cell of a [`grid`]: its colour on the viridis scale (`value` in
/// `[0, 1]`) and the text written in it.
struct Cell {
    value: f64,
    text: String,
}

/// Sizes of a [`grid`]: the picture, the x and y label areas, the cell font.
struct GridLayout {
    size: (u32, u32),
    label_areas: (u32, u32),
    font: u32,
}

/// Named columns and rows (the first row on top) of coloured cells with
/// their text; a `None` cell stays blank.
fn grid(
    path: &Path,
    title: &str,
    (x_desc, y_desc): (&str, &str),
    columns: &[String],
    rows: &[String],
    cells: &[Vec<Option<Cell>>],
    layout: &GridLayout,
) -> Result<(), PlotError> {
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    let (n_cols, n_rows) = (columns.len(), rows.len());
    render_png(path, layout.size, |root| {
        let err = |e: &dyn std::fmt::Display| e.to_string();
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT_NAME, 20))
            .margin(12)
            .x_label_area_size(layout.label_areas.0)
            .y_label_area_size(layout.label_areas.1)
            .build_cartesian_2d(0.0..n_cols as f64, 0.0..n_rows as f64)
            .map_err(|e| err(&e))?;
        // Tick at the middle of each cell; row 0 on top.
        let name = |names: &[String], v: f64, flip: bool| {
            let i = v.floor() as usize;
            let i = if flip { names.len().saturating_sub(1 + i) } else { i };
            if (v - v.floor() - 0.5).abs() < 1e-6 {
                names.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(2 * n_cols + 1)
            .y_labels(2 * n_rows + 1)
            .x_label_formatter(&|v| name(columns, *v, false))
            .y_label_formatter(&|v| name(rows, *v, true))
            .x_desc(x_desc)
            .y_desc(y_desc)
            .label_style((FONT_NAME, 14))
            .axis_desc_style((FONT_NAME, 16))
            .draw()
            .map_err(|e| err(&e))?;
        for (r, row) in cells.iter().enumerate() {
            for (c, cell) in row.iter().enumerate() {
                let (x, y) = (c as f64, (n_rows - 1 - r) as f64);
                let Some(cell) = cell else { continue };
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x, y), (x + 1.0, y + 1.0)],
                        ViridisRGB::get_color(cell.value).filled(),
                    )))
                    .map_err(|e| err(&e))?;
                let color = if cell.value > 0.6 { BLACK } else { WHITE };
                let style = (FONT_NAME, layout.font)
                    .into_font()
                    .color(&color)
                    .pos(Pos::new(HPos::Center, VPos::Center));
                chart
                    .draw_series(std::iter::once(Text::new(cell.text.clone(), (x + 0.5, y + 0.5), style)))
                    .map_err(|e| err(&e))?;
            }
        }
        Ok(())
    })
}
