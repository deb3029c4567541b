from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_q_cloudtasks", "0003_receipt_claimed"),
    ]

    operations = [
        migrations.AddField(
            model_name="receipt",
            name="execution",
            field=models.CharField(blank=True, default="", max_length=500),
        ),
        migrations.AddField(
            model_name="receipt",
            name="cancelled",
            field=models.DateTimeField(null=True),
        ),
        migrations.AddField(
            model_name="receipt",
            name="lost",
            field=models.PositiveIntegerField(default=0),
        ),
    ]
