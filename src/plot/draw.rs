//! Renders a [`Figure`] as SVG or PNG with `plotters`, the maintained Rust
//! plotting library (no browser, no Python).
//!
//! Text needs a font: `plotters` lays text out with a font it is given
//! (its `ttf` backend would look fonts up through fontconfig, which the
//! static binary does not have). The font is the Ubuntu Light face that
//! `epaint_default_fonts` embeds (egui's default fonts, a crate that only
//! carries font bytes), registered once as `sans-serif`: PNG text is drawn
//! with it, and SVG text is measured with it and named `sans-serif`, so the
//! viewer draws it with its own sans-serif face.

use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{Corner, Figure, Style};

/// The size of every image, pixels.
pub const SIZE: (u32, u32) = (1024, 640);

/// An image format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Svg,
    Png,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Svg => "svg",
            Format::Png => "png",
        }
    }
}

const FONT: &str = "sans-serif";

fn register_font() -> Result<(), String> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = plotters::style::register_font(
            FONT,
            FontStyle::Normal,
            epaint_default_fonts::UBUNTU_LIGHT,
        )
        .map_err(|_| "the embedded font could not be read".to_string());
    });
    result
}

/// The figure as an SVG document.
pub fn svg(f: &Figure) -> Result<String, String> {
    register_font()?;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        chart(&root, f)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// The figure as a PNG file at `path`.
pub fn png(f: &Figure, path: &std::path::Path) -> Result<(), String> {
    register_font()?;
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    chart(&root, f)?;
    root.present().map_err(|e| e.to_string())
}

/// The color of series `i`.
fn color(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(255, 127, 14),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(23, 190, 207),
    ];
    COLORS[i % COLORS.len()]
}

fn chart<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, f: &Figure) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let mut c = ChartBuilder::on(root)
        .caption(&f.title, (FONT, 24))
        .margin(18)
        .x_label_area_size(56)
        .y_label_area_size(84)
        .build_cartesian_2d(f.x.min..f.x.max, f.y.min..f.y.max)
        .map_err(err)?;
    c.configure_mesh()
        .x_desc(&f.x.label)
        .y_desc(&f.y.label)
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 17))
        .light_line_style(BLACK.mix(0.06))
        .bold_line_style(BLACK.mix(0.15))
        .draw()
        .map_err(err)?;
    for m in &f.markers {
        let gray = BLACK.mix(0.35);
        c.draw_series(std::iter::once(PathElement::new(
            vec![(m.x, f.y.min), (m.x, f.y.max)],
            gray.stroke_width(1),
        )))
        .map_err(err)?;
        c.draw_series(std::iter::once(
            EmptyElement::at((m.x, f.y.min))
                + Text::new(
                    m.label.clone(),
                    (4, -18),
                    (FONT, 13).into_font().color(&gray),
                ),
        ))
        .map_err(err)?;
    }
    for (i, s) in f.series.iter().enumerate() {
        let col = color(i);
        let line = s.points.iter().map(|p| (p.x, p.y));
        c.draw_series(LineSeries::new(line, col.stroke_width(2)))
            .map_err(err)?
            .label(&s.name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], col.stroke_width(3)));
        if s.style == Style::LinePoints {
            c.draw_series(s.points.iter().map(|p| {
                let style = if p.dominated {
                    col.stroke_width(2)
                } else {
                    col.filled()
                };
                Circle::new((p.x, p.y), 5, style)
            }))
            .map_err(err)?;
            c.draw_series(s.points.iter().filter_map(|p| {
                let label = p.label.clone()?;
                Some(
                    EmptyElement::at((p.x, p.y))
                        + Text::new(label, (7, -18), (FONT, 14).into_font().color(&col)),
                )
            }))
            .map_err(err)?;
        }
    }
    if !f.series.is_empty() {
        c.configure_series_labels()
            .position(match f.legend {
                Corner::UpperLeft => SeriesLabelPosition::UpperLeft,
                Corner::UpperRight => SeriesLabelPosition::UpperRight,
            })
            .label_font((FONT, 15))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .draw()
            .map_err(err)?;
    }
    Ok(())
}
