import { type Timestamp, timestampDate } from "@bufbuild/protobuf/wkt";

// Intl formatters with the viewer's locale (undefined = the browser's), made once.
const timeFormat = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, {
  dateStyle: "medium",
  timeStyle: "medium",
});
const numberFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });

/** A protobuf Timestamp as a Date, or undefined when unset. */
export function toDate(ts: Timestamp | undefined): Date | undefined {
  return ts === undefined ? undefined : timestampDate(ts);
}

/** Time of day in the viewer's locale; with the date when it is not today. */
export function formatTime(date: Date | undefined, now = new Date()): string {
  if (date === undefined) return "";
  return date.toDateString() === now.toDateString()
    ? timeFormat.format(date)
    : dateTimeFormat.format(date);
}

/** Full date and time in the viewer's locale (for tooltips). */
export function formatDateTime(date: Date | undefined): string {
  return date === undefined ? "" : dateTimeFormat.format(date);
}

/** A number in the viewer's locale with at most one decimal. */
export function formatNumber(value: number | bigint): string {
  return numberFormat.format(value);
}
