// The console's pages, wired in one place. Each page is a module of its own; an entry names its
// hash pattern, the roles that may open it (none: every signed-in user), an optional menu label
// (an i18n key) with the href it opens (entries without one are reached by links) and
// render(main, match, me), which draws into <main> and may return a view ({ dispose() }) to be
// torn down on leaving.
// "#/" (the day's sittings) is the fallback when nothing here matches.

import { renderHolds } from "./admin/holds.js";
import { renderImport } from "./admin/import.js";
import { renderPeople } from "./admin/people.js";
import { renderFindings } from "./findings.js";
import { renderSitting } from "./sitting.js";

export const ROUTES = [
  {
    // #/sittings/CODE[?at=RFC3339]: the code is URI-encoded, so a "?" in it is %3F.
    pattern: /^#\/sittings\/([^?]+)(?:\?(.*))?$/,
    render: (main, match, me) =>
      renderSitting(main, decodeURIComponent(match[1]), me, {
        at: new URLSearchParams(match[2] ?? "").get("at"),
      }),
  },
  {
    // The supervisors' findings across sittings: the centre, and district officers (theirs).
    pattern: /^#\/findings(?:\?(.*))?$/,
    roles: ["admin", "district_officer"],
    nav: "findingsPage.nav",
    href: "#/findings",
    render: (main, match, me) => renderFindings(main, new URLSearchParams(match[1] ?? ""), me),
  },
  // The centre's pages (services/web/admin/); district officers see and place holds in their
  // district (SPEC.md "Security model"), the server checks the scope.
  {
    pattern: /^#\/admin\/import$/,
    roles: ["admin"],
    nav: "nav.import",
    href: "#/admin/import",
    render: (main) => renderImport(main),
  },
  {
    pattern: /^#\/admin\/people$/,
    roles: ["admin"],
    nav: "nav.people",
    href: "#/admin/people",
    render: (main, match, me) => renderPeople(main, me),
  },
  {
    pattern: /^#\/holds$/,
    roles: ["admin", "district_officer"],
    nav: "nav.holds",
    href: "#/holds",
    render: (main, match, me) => renderHolds(main, match, me),
  },
];

// The menu for a role: entries with a label that the role may open, in the order above.
export function menuFor(role) {
  return ROUTES.filter((route) => route.nav && (!route.roles || route.roles.includes(role)));
}
