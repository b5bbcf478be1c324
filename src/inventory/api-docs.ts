/**
 * The OpenAPI 3.1 document of the targets API, served at /api/openapi.json and read by the page
 * at /api/ui/. The request bodies' schemas are derived from the valibot schemas api.ts validates
 * with (describe.ts's toJsonSchema), so the document cannot drift from what the API accepts;
 * answers are described here by hand.
 */
import type { Json } from "../config/describe.ts";
import { ADDRESS_FAMILIES, TARGET_TYPES } from "../config/schema.ts";

type JsonObject = { [key: string]: Json };

export interface OpenApiInput {
  /** netprobify's version. */
  readonly version: string;
  /** JSON Schema of the POST /api/target body. */
  readonly targetRequest: JsonObject;
  /** JSON Schema of the DELETE /api/target body. */
  readonly targetKeys: JsonObject;
  /** How a lifetime is written, for its description. */
  readonly lifetimeExpected: string;
  readonly maxBodyBytes: number;
}

/** What lifetimeSeconds() in schema.ts accepts, in JSON Schema terms. */
const LIFETIME_SCHEMA: JsonObject = {
  oneOf: [
    { type: "string", pattern: "^\\s*(\\d+\\s*[dhms]\\s*)+$", examples: ["2h", "1d 3h 2m"] },
    { type: "integer", minimum: 1, description: "Seconds." },
  ],
};

const TYPES: Json = [...TARGET_TYPES];
const FAMILIES: Json = [...ADDRESS_FAMILIES];

const ref = (name: string): JsonObject => ({ $ref: `#/components/schemas/${name}` });

const jsonContent = (schema: JsonObject): JsonObject => ({ "application/json": { schema } });

const answer = (description: string, schema: JsonObject = ref("Error")): JsonObject => ({
  description,
  content: jsonContent(schema),
});

/** The body schema with lifetime spelt out: valibot checks it with a function describe.ts cannot read. */
function withLifetime(schema: JsonObject, lifetimeExpected: string): JsonObject {
  const properties = schema.properties;
  if (typeof properties !== "object" || properties === null || Array.isArray(properties) || !("lifetime" in properties)) {
    return schema;
  }
  const lifetime = properties.lifetime;
  const described = typeof lifetime === "object" && lifetime !== null && !Array.isArray(lifetime) ? lifetime : {};
  const text = typeof described.description === "string" ? `${described.description} ` : "";
  return {
    ...schema,
    properties: {
      ...properties,
      lifetime: { ...LIFETIME_SCHEMA, description: `${text}Written as ${lifetimeExpected}.` },
    },
  };
}

const TARGET_VIEW: JsonObject = {
  type: "object",
  description: "A target the API holds.",
  required: [
    "owner",
    "hostname",
    "type",
    "dst_port",
    "ip_payload_size",
    "address_family",
    "groups",
    "creation_date",
    "lifetime",
    "expiry_date",
  ],
  properties: {
    owner: { type: "string" },
    hostname: { type: "string" },
    type: { enum: TYPES },
    dst_port: { type: "integer", minimum: 1, maximum: 65535 },
    ip_payload_size: { type: "integer", minimum: 0, description: "0: the bare L4 header." },
    address_family: { enum: FAMILIES },
    groups: { type: "array", items: { type: "string" } },
    creation_date: { type: "string", format: "date-time" },
    lifetime: { type: "integer", description: "Seconds, after any cut to max_target_lifetime." },
    expiry_date: { type: "string", format: "date-time", description: "creation_date + lifetime: the target is dropped then." },
    warnings: {
      type: "array",
      items: { type: "string" },
      description: "POST only, when something did not go as asked: the lifetime was cut, the state file could not be written.",
    },
  },
};

const ERROR: JsonObject = {
  type: "object",
  required: ["error"],
  properties: {
    error: { type: "string", description: "What is wrong, worded as `netprobify check` words config errors." },
    field: { type: "string", description: "The field (or header, or query parameter) at fault, when one is." },
    expected: { type: "string", description: "What would be right." },
    problems: {
      type: "array",
      description: "Every problem found in the body, the first one repeated in error, field and expected.",
      items: {
        type: "object",
        properties: { field: { type: "string" }, message: { type: "string" }, expected: { type: "string" } },
      },
    },
    target: { ...ref("Target"), description: "409: the target that already exists." },
  },
};

/** The document. */
export function openApiDocument(input: OpenApiInput): JsonObject {
  const tooLarge = answer(`The body is larger than ${input.maxBodyBytes} bytes.`);
  const common = {
    "400": answer("The body, a field or a query parameter is not valid: `field` names it."),
    "401": answer("The apikey header is missing, empty or wrong (`field` is apikey)."),
    "405": answer("Another method is expected: the Allow header lists them."),
  };
  return {
    openapi: "3.1.0",
    info: {
      title: "netprobify targets API",
      version: input.version,
      description:
        "Targets added here are probed by this netprobify in the groups of api.yaml, until their lifetime " +
        "ends or they are deleted, and are kept across restarts. Every data call carries the token of api.yaml " +
        "in an `apikey` header; this document and /api/ui/ need none. Errors are JSON objects whose `field` " +
        "names what is at fault.",
    },
    servers: [{ url: "/" }],
    security: [{ apikey: [] }],
    tags: [{ name: "targets" }, { name: "documentation" }],
    paths: {
      "/api/targets": {
        get: {
          tags: ["targets"],
          operationId: "getTargets",
          summary: "List the API's targets",
          description: "Every filter given must match; an empty one matches everything.",
          parameters: [
            { name: "hostname", in: "query", schema: { type: "string" }, description: "Hostname, compared without case." },
            { name: "owner", in: "query", schema: { type: "string" }, description: "Owner, exactly." },
            { name: "address_family", in: "query", schema: { enum: FAMILIES } },
          ],
          responses: {
            "200": { description: "The targets.", content: jsonContent({ type: "array", items: ref("Target") }) },
            ...common,
          },
        },
      },
      "/api/target": {
        post: {
          tags: ["targets"],
          operationId: "addTarget",
          summary: "Add a target",
          description:
            "Defaults as in the original: ICMPping, dst_port 80, ip_payload_size 0 (the bare header), ipv4, " +
            "api.yaml's target_lifetime. The hostname must resolve in address_family.",
          requestBody: { required: true, content: jsonContent(ref("TargetRequest")) },
          responses: {
            "201": { description: "Added; probed from the next iteration.", content: jsonContent(ref("Target")) },
            ...common,
            "409": answer(
              "A target with the same hostname, address_family, type, dst_port (except for ICMPping) and " +
                "ip_payload_size exists (`target` shows it), or max_targets is reached.",
            ),
            "413": tooLarge,
            "422": answer("The hostname does not resolve in address_family (`field` is hostname)."),
          },
        },
        delete: {
          tags: ["targets"],
          operationId: "deleteTargets",
          summary: "Delete targets",
          description:
            "Removes the owner's targets of this hostname that match every other key given: give them all " +
            "to remove exactly the one a POST added.",
          requestBody: { required: true, content: jsonContent(ref("TargetKeys")) },
          responses: {
            "200": {
              description: "Removed.",
              content: jsonContent({
                type: "object",
                required: ["deleted"],
                properties: {
                  deleted: { type: "array", items: ref("Target") },
                  warnings: { type: "array", items: { type: "string" } },
                },
              }),
            },
            ...common,
            "404": answer("No target matches."),
            "413": tooLarge,
          },
        },
      },
      "/api/openapi.json": {
        get: {
          tags: ["documentation"],
          operationId: "openApi",
          summary: "This document",
          security: [],
          responses: { "200": { description: "OpenAPI 3.1 document.", content: { "application/json": {} } } },
        },
      },
      "/api/ui/": {
        get: {
          tags: ["documentation"],
          operationId: "ui",
          summary: "Interactive page for trying the API (self-contained, works offline)",
          security: [],
          responses: { "200": { description: "HTML page.", content: { "text/html": {} } } },
        },
      },
    },
    components: {
      securitySchemes: {
        apikey: { type: "apiKey", in: "header", name: "apikey", description: "The token of api.yaml." },
      },
      schemas: {
        TargetRequest: withLifetime(input.targetRequest, input.lifetimeExpected),
        TargetKeys: input.targetKeys,
        Target: TARGET_VIEW,
        Error: ERROR,
      },
    },
  };
}
