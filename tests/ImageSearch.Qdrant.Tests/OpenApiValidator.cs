using System.Globalization;
using System.Text.Json;

namespace ImageSearch.Qdrant.Tests;

/// <summary>An operation of the spec matched by a request: its path template and definition.</summary>
internal sealed record OpenApiOperation(string Method, string Template, string OperationId, JsonElement Definition);

/// <summary>
/// Checks HTTP exchanges against Fixtures/qdrant-openapi-excerpt.json (an excerpt of Qdrant's own
/// OpenAPI document; its "x-source" says which commit). Implements the OpenAPI 3.0 schema keywords that
/// document uses: $ref, type, format (uuid, date-time, unsigned and 64-bit integers), minimum, maximum,
/// enum, required, properties, additionalProperties, items, uniqueItems, anyOf, oneOf, nullable.
/// </summary>
/// <remarks>
/// One deliberate deviation, stricter than OpenAPI: an object property that its schema does not declare
/// is an error unless the schema allows it with additionalProperties. The point is to catch a misspelled
/// field name, which plain OpenAPI would accept and Qdrant would silently ignore or reject. Integers must
/// be written without a fraction or exponent, as Qdrant's deserializer requires.
/// </remarks>
internal sealed class OpenApiValidator
{
    private const string SchemaPrefix = "#/components/schemas/";

    private readonly JsonDocument _document;
    private readonly JsonElement _schemas;
    private readonly List<(string Method, string[] Segments, string Template, JsonElement Definition)> _operations = [];

    private OpenApiValidator(JsonDocument document)
    {
        _document = document;
        _schemas = document.RootElement.GetProperty("components").GetProperty("schemas");
        foreach (var path in document.RootElement.GetProperty("paths").EnumerateObject())
        {
            foreach (var operation in path.Value.EnumerateObject())
            {
                _operations.Add((operation.Name.ToUpperInvariant(), path.Name.Trim('/').Split('/'), path.Name, operation.Value));
            }
        }
    }

    /// <summary>The validator for the Qdrant excerpt shipped with the tests.</summary>
    public static OpenApiValidator Qdrant { get; } = new(
        JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "qdrant-openapi-excerpt.json"))));

    /// <summary>Where the excerpt comes from (its "x-source" commit).</summary>
    public string SourceCommit => _document.RootElement.GetProperty("x-source").GetProperty("commit").GetString()!;

    /// <summary>The operation for <paramref name="method"/> and <paramref name="path"/> ("/collections/c/points"), or null.</summary>
    public OpenApiOperation? FindOperation(string method, string path)
    {
        var segments = Uri.UnescapeDataString(path).Trim('/').Split('/');
        foreach (var (opMethod, templateSegments, template, definition) in _operations)
        {
            if (opMethod == method && templateSegments.Length == segments.Length &&
                templateSegments.Zip(segments).All(pair => pair.First.StartsWith('{') || pair.First == pair.Second))
            {
                return new OpenApiOperation(method, template, definition.GetProperty("operationId").GetString()!, definition);
            }
        }

        return null;
    }

    /// <summary>Problems with a request for <paramref name="operation"/>: query parameters and JSON body.</summary>
    public List<string> ValidateRequest(OpenApiOperation operation, IReadOnlyDictionary<string, string> query, string? contentType, string? body)
    {
        var errors = new List<string>();
        var parameters = operation.Definition.TryGetProperty("parameters", out var list) ? list.EnumerateArray().ToList() : [];
        foreach (var (name, value) in query)
        {
            var parameter = parameters.FirstOrDefault(p => p.GetProperty("in").GetString() == "query" && p.GetProperty("name").GetString() == name);
            if (parameter.ValueKind == JsonValueKind.Undefined)
            {
                errors.Add($"query parameter '{name}' is not defined for {operation.OperationId}");
                continue;
            }

            ValidateQueryValue(name, value, Resolve(parameter.GetProperty("schema")), errors);
        }

        var expectsBody = operation.Definition.TryGetProperty("requestBody", out var requestBody);
        if (!expectsBody)
        {
            if (!string.IsNullOrEmpty(body))
            {
                errors.Add($"{operation.OperationId} takes no request body, got one");
            }

            return errors;
        }

        if (contentType != "application/json")
        {
            errors.Add($"{operation.OperationId} expects Content-Type application/json, got '{contentType}'");
        }

        if (string.IsNullOrEmpty(body))
        {
            errors.Add($"{operation.OperationId} expects a JSON body, got none");
            return errors;
        }

        var schema = requestBody.GetProperty("content").GetProperty("application/json").GetProperty("schema");
        Validate(body, schema, errors);
        return errors;
    }

    /// <summary>Problems with a response to <paramref name="operation"/>.</summary>
    public List<string> ValidateResponse(OpenApiOperation operation, int status, string? contentType, string body)
    {
        var errors = new List<string>();
        var responses = operation.Definition.GetProperty("responses");
        var key = status.ToString(CultureInfo.InvariantCulture);
        if (!responses.TryGetProperty(key, out var response) &&
            !(status is >= 400 and < 500 && responses.TryGetProperty("4XX", out response)) &&
            !responses.TryGetProperty("default", out response))
        {
            errors.Add($"{operation.OperationId} documents no response {status}");
            return errors;
        }

        if (!response.TryGetProperty("content", out var content))
        {
            return errors;
        }

        if (contentType is null || !content.TryGetProperty(contentType, out var media))
        {
            errors.Add($"{operation.OperationId} response {status} has Content-Type '{contentType}', not one the spec lists");
            return errors;
        }

        if (contentType == "application/json")
        {
            Validate(body, media.GetProperty("schema"), errors);
        }

        return errors;
    }

    /// <summary>Problems with <paramref name="json"/> as an instance of the named component schema.</summary>
    public List<string> ValidateSchema(string json, string schemaName)
    {
        var errors = new List<string>();
        using var document = JsonDocument.Parse("{\"$ref\":\"" + SchemaPrefix + schemaName + "\"}");
        Validate(json, document.RootElement, errors);
        return errors;
    }

    private void Validate(string json, JsonElement schema, List<string> errors)
    {
        JsonDocument value;
        try
        {
            value = JsonDocument.Parse(json);
        }
        catch (JsonException ex)
        {
            errors.Add($"body is not JSON: {ex.Message}");
            return;
        }

        using (value)
        {
            Validate(value.RootElement, schema, "$", errors);
        }
    }

    private void Validate(JsonElement value, JsonElement schema, string at, List<string> errors)
    {
        if (schema.TryGetProperty("$ref", out var reference))
        {
            var name = reference.GetString()!;
            if (!name.StartsWith(SchemaPrefix, StringComparison.Ordinal) || !_schemas.TryGetProperty(name[SchemaPrefix.Length..], out var target))
            {
                errors.Add($"{at}: schema {name} is not in the excerpt");
                return;
            }

            Validate(value, target, at, errors);
            return;
        }

        var nullable = schema.TryGetProperty("nullable", out var n) && n.GetBoolean();
        if (value.ValueKind == JsonValueKind.Null && nullable)
        {
            return;
        }

        // {"nullable": true} alone is the "or null" branch of an anyOf.
        if (nullable && !schema.TryGetProperty("type", out _) && !schema.TryGetProperty("anyOf", out _) &&
            !schema.TryGetProperty("oneOf", out _) && !schema.TryGetProperty("properties", out _))
        {
            errors.Add($"{at}: must be null");
            return;
        }

        if (schema.TryGetProperty("anyOf", out var anyOf))
        {
            ValidateBranches(value, anyOf, at, errors, exactlyOne: false);
            return;
        }

        if (schema.TryGetProperty("oneOf", out var oneOf))
        {
            ValidateBranches(value, oneOf, at, errors, exactlyOne: true);
            return;
        }

        if (value.ValueKind == JsonValueKind.Null)
        {
            errors.Add($"{at}: null is not allowed");
            return;
        }

        if (schema.TryGetProperty("type", out var type) && !HasType(value, type.GetString()!))
        {
            errors.Add($"{at}: expected {type.GetString()}, got {Describe(value)}");
            return;
        }

        if (schema.TryGetProperty("enum", out var allowed) &&
            !allowed.EnumerateArray().Any(option => option.GetRawText() == value.GetRawText()))
        {
            errors.Add($"{at}: {value.GetRawText()} is not one of {allowed.GetRawText()}");
        }

        if (schema.TryGetProperty("format", out var format))
        {
            CheckFormat(value, format.GetString()!, at, errors);
        }

        if (value.ValueKind == JsonValueKind.Number)
        {
            var number = value.GetDouble();
            if (schema.TryGetProperty("minimum", out var minimum) && number < minimum.GetDouble())
            {
                errors.Add($"{at}: {value.GetRawText()} is below the minimum {minimum.GetRawText()}");
            }

            if (schema.TryGetProperty("maximum", out var maximum) && number > maximum.GetDouble())
            {
                errors.Add($"{at}: {value.GetRawText()} is above the maximum {maximum.GetRawText()}");
            }
        }

        if (value.ValueKind == JsonValueKind.Array)
        {
            ValidateArray(value, schema, at, errors);
        }
        else if (value.ValueKind == JsonValueKind.Object)
        {
            ValidateObject(value, schema, at, errors);
        }
    }

    private void ValidateBranches(JsonElement value, JsonElement branches, string at, List<string> errors, bool exactlyOne)
    {
        List<string>? closest = null;
        var matches = 0;
        foreach (var branch in branches.EnumerateArray())
        {
            var branchErrors = new List<string>();
            Validate(value, branch, at, branchErrors);
            if (branchErrors.Count == 0)
            {
                matches++;
            }
            else if (closest is null || branchErrors.Count < closest.Count)
            {
                closest = branchErrors;
            }
        }

        if (matches == 0)
        {
            errors.Add($"{at}: matches no {(exactlyOne ? "oneOf" : "anyOf")} alternative; the closest fails with: {string.Join("; ", closest ?? [])}");
        }
        else if (exactlyOne && matches > 1)
        {
            errors.Add($"{at}: matches {matches} oneOf alternatives, not exactly one");
        }
    }

    private void ValidateArray(JsonElement value, JsonElement schema, string at, List<string> errors)
    {
        var index = 0;
        foreach (var item in value.EnumerateArray())
        {
            if (schema.TryGetProperty("items", out var items))
            {
                Validate(item, items, $"{at}[{index}]", errors);
            }

            index++;
        }

        if (schema.TryGetProperty("uniqueItems", out var unique) && unique.GetBoolean())
        {
            var raw = value.EnumerateArray().Select(item => item.GetRawText()).ToList();
            if (raw.Distinct().Count() != raw.Count)
            {
                errors.Add($"{at}: items must be unique");
            }
        }
    }

    private void ValidateObject(JsonElement value, JsonElement schema, string at, List<string> errors)
    {
        if (schema.TryGetProperty("required", out var required))
        {
            foreach (var name in required.EnumerateArray().Select(r => r.GetString()!))
            {
                if (!value.TryGetProperty(name, out _))
                {
                    errors.Add($"{at}: required property '{name}' is missing");
                }
            }
        }

        var hasProperties = schema.TryGetProperty("properties", out var properties);
        var hasAdditional = schema.TryGetProperty("additionalProperties", out var additional);
        foreach (var property in value.EnumerateObject())
        {
            var path = $"{at}.{property.Name}";
            if (hasProperties && properties.TryGetProperty(property.Name, out var propertySchema))
            {
                Validate(property.Value, propertySchema, path, errors);
            }
            else if (hasAdditional)
            {
                if (additional.ValueKind == JsonValueKind.False)
                {
                    errors.Add($"{path}: property is not allowed here");
                }
                else if (additional.ValueKind == JsonValueKind.Object)
                {
                    Validate(property.Value, additional, path, errors);
                }
            }
            else if (hasProperties)
            {
                errors.Add($"{path}: property is not defined by the schema");
            }
        }
    }

    private static bool HasType(JsonElement value, string type) => type switch
    {
        "object" => value.ValueKind == JsonValueKind.Object,
        "array" => value.ValueKind == JsonValueKind.Array,
        "string" => value.ValueKind == JsonValueKind.String,
        "boolean" => value.ValueKind is JsonValueKind.True or JsonValueKind.False,
        "number" => value.ValueKind == JsonValueKind.Number,
        "integer" => value.ValueKind == JsonValueKind.Number && value.GetRawText().All(c => char.IsAsciiDigit(c) || c == '-'),
        _ => throw new InvalidOperationException($"The excerpt uses type '{type}', which the validator does not know."),
    };

    private static void CheckFormat(JsonElement value, string format, string at, List<string> errors)
    {
        var ok = format switch
        {
            "uuid" => value.ValueKind != JsonValueKind.String || Guid.TryParse(value.GetString(), out _),
            "date-time" => value.ValueKind != JsonValueKind.String ||
                           DateTimeOffset.TryParse(value.GetString(), CultureInfo.InvariantCulture, DateTimeStyles.None, out _),
            "uint" or "uint64" => value.ValueKind != JsonValueKind.Number || value.TryGetUInt64(out _),
            "uint32" => value.ValueKind != JsonValueKind.Number || value.TryGetUInt32(out _),
            "int64" => value.ValueKind != JsonValueKind.Number || value.TryGetInt64(out _),
            _ => true,
        };
        if (!ok)
        {
            errors.Add($"{at}: {value.GetRawText()} is not a valid {format}");
        }
    }

    private static void ValidateQueryValue(string name, string value, JsonElement schema, List<string> errors)
    {
        var type = schema.TryGetProperty("type", out var t) ? t.GetString() : null;
        var ok = type switch
        {
            "boolean" => value is "true" or "false",
            "integer" => long.TryParse(value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var number) &&
                         (!schema.TryGetProperty("minimum", out var minimum) || number >= minimum.GetInt64()),
            "string" => true,
            _ => false,
        };
        if (!ok)
        {
            errors.Add($"query parameter '{name}={value}' does not match its schema {schema.GetRawText()}");
        }
    }

    private JsonElement Resolve(JsonElement schema) =>
        schema.TryGetProperty("$ref", out var reference) && _schemas.TryGetProperty(reference.GetString()![SchemaPrefix.Length..], out var target)
            ? target
            : schema;

    private static string Describe(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.Number => "number " + value.GetRawText(),
        JsonValueKind.String => "string " + value.GetRawText(),
        _ => value.ValueKind.ToString().ToLowerInvariant(),
    };
}
