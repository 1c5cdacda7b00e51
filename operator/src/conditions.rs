//! Status conditions with `metav1.Condition` semantics: the transition time moves
//! only when the status changes, so an unchanged reconcile writes nothing.

use crate::crd::Condition;

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const DEGRADED: &str = "Degraded";

/// Now, RFC 3339 in UTC with second precision (what Kubernetes writes).
pub fn now_rfc3339() -> String {
    to_rfc3339(time::OffsetDateTime::now_utc())
}

pub fn to_rfc3339(t: time::OffsetDateTime) -> String {
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub fn parse_rfc3339(text: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
}

/// Builds the next condition list from the previous one.
pub struct Conditions<'a> {
    previous: &'a [Condition],
    generation: Option<i64>,
    next: Vec<Condition>,
}

impl<'a> Conditions<'a> {
    pub fn new(previous: &'a [Condition], generation: Option<i64>) -> Self {
        Conditions {
            previous,
            generation,
            next: Vec::new(),
        }
    }

    /// Sets a condition; keeps the previous transition time when the status is unchanged.
    pub fn set(
        &mut self,
        type_: &str,
        status: bool,
        reason: &str,
        message: impl Into<String>,
    ) -> &mut Self {
        let status = if status { "True" } else { "False" };
        let last_transition_time = self
            .previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(now_rfc3339);
        self.next.retain(|c| c.type_ != type_);
        self.next.push(Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message: message.into(),
            last_transition_time,
            observed_generation: self.generation,
        });
        self
    }

    /// Carries a previous condition over unchanged (when this pass says nothing new
    /// about it).
    pub fn keep(&mut self, type_: &str) -> &mut Self {
        if let Some(c) = self.previous.iter().find(|c| c.type_ == type_) {
            self.next.retain(|n| n.type_ != type_);
            self.next.push(c.clone());
        }
        self
    }

    /// Ready (or not), with the matching Reconciling/Degraded companions.
    pub fn ready(&mut self, ready: bool, reason: &str, message: impl Into<String>) -> &mut Self {
        let message = message.into();
        self.set(READY, ready, reason, message.clone());
        if ready {
            self.set(RECONCILING, false, reason, "");
            self.set(DEGRADED, false, reason, "");
        } else {
            self.set(RECONCILING, false, reason, message.clone());
            self.set(DEGRADED, true, reason, message);
        }
        self
    }

    /// Same as [`Self::ready`] for a transient state that is still converging.
    pub fn progressing(&mut self, reason: &str, message: impl Into<String>) -> &mut Self {
        let message = message.into();
        self.set(READY, false, reason, message.clone());
        self.set(RECONCILING, true, reason, message);
        self.set(DEGRADED, false, reason, "");
        self
    }

    pub fn finish(self) -> Vec<Condition> {
        let mut next = self.next;
        next.sort_by(|a, b| a.type_.cmp(&b.type_));
        next
    }
}

/// Looks a condition up by type.
pub fn find<'c>(conditions: &'c [Condition], type_: &str) -> Option<&'c Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_is_kept_while_status_is_unchanged() {
        let mut first = Conditions::new(&[], Some(1));
        first.set(READY, true, "Provisioned", "ok");
        let mut first = first.finish();
        first[0].last_transition_time = "2020-01-01T00:00:00Z".into();
        let mut second = Conditions::new(&first, Some(2));
        second.set(READY, true, "Provisioned", "still ok");
        let second = second.finish();
        assert_eq!(second[0].last_transition_time, "2020-01-01T00:00:00Z");
        let mut third = Conditions::new(&second, Some(2));
        third.set(READY, false, "Broken", "no");
        assert_ne!(
            third.finish()[0].last_transition_time,
            "2020-01-01T00:00:00Z"
        );
    }
}
