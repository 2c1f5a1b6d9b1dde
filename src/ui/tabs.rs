//! The main area's tabs: a plain model, so keyboard navigation is tested natively.

/// One tab of the main area.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tab {
    Telemetry,
    C2d,
    Twin,
    Methods,
    Provision,
    Fleet,
    Console,
}

impl Tab {
    /// Every tab, in display order.
    pub const ALL: [Tab; 7] = [
        Tab::Telemetry,
        Tab::C2d,
        Tab::Twin,
        Tab::Methods,
        Tab::Provision,
        Tab::Fleet,
        Tab::Console,
    ];

    /// The visible label.
    pub fn label(self) -> &'static str {
        match self {
            Tab::Telemetry => "Telemetry",
            Tab::C2d => "C2D inbox",
            Tab::Twin => "Twin",
            Tab::Methods => "Methods",
            Tab::Provision => "Provision",
            Tab::Fleet => "Fleet",
            Tab::Console => "Hub console",
        }
    }

    /// A stable slug used for element ids (`tab-{slug}`, `panel-{slug}`).
    pub fn slug(self) -> &'static str {
        match self {
            Tab::Telemetry => "telemetry",
            Tab::C2d => "c2d",
            Tab::Twin => "twin",
            Tab::Methods => "methods",
            Tab::Provision => "provision",
            Tab::Fleet => "fleet",
            Tab::Console => "console",
        }
    }

    fn index(self) -> usize {
        Tab::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }

    /// The tab to the right, wrapping around (ArrowRight in a WAI-ARIA tablist).
    pub fn next(self) -> Tab {
        Tab::ALL[(self.index() + 1) % Tab::ALL.len()]
    }

    /// The tab to the left, wrapping around (ArrowLeft).
    pub fn prev(self) -> Tab {
        Tab::ALL[(self.index() + Tab::ALL.len() - 1) % Tab::ALL.len()]
    }

    /// Where a key press in the tablist moves the selection, if anywhere.
    pub fn after_key(self, key: &str) -> Option<Tab> {
        match key {
            "ArrowRight" => Some(self.next()),
            "ArrowLeft" => Some(self.prev()),
            "Home" => Some(Tab::ALL[0]),
            "End" => Some(Tab::ALL[Tab::ALL.len() - 1]),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrows_wrap_around() {
        assert_eq!(Tab::Telemetry.next(), Tab::C2d);
        assert_eq!(Tab::Methods.next(), Tab::Provision);
        assert_eq!(Tab::Provision.next(), Tab::Fleet);
        assert_eq!(Tab::Fleet.next(), Tab::Console);
        assert_eq!(Tab::Console.next(), Tab::Telemetry);
        assert_eq!(Tab::Telemetry.prev(), Tab::Console);
        assert_eq!(Tab::Twin.prev(), Tab::C2d);
    }

    #[test]
    fn keys_follow_the_aria_tablist_pattern() {
        assert_eq!(Tab::C2d.after_key("Home"), Some(Tab::Telemetry));
        assert_eq!(Tab::C2d.after_key("End"), Some(Tab::Console));
        assert_eq!(Tab::C2d.after_key("ArrowRight"), Some(Tab::Twin));
        assert_eq!(Tab::C2d.after_key("Enter"), None);
    }

    #[test]
    fn slugs_are_unique() {
        let mut slugs: Vec<_> = Tab::ALL.iter().map(|t| t.slug()).collect();
        slugs.sort();
        slugs.dedup();
        assert_eq!(slugs.len(), Tab::ALL.len());
    }
}
